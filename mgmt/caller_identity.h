#ifndef RELAY_MGMT_CALLER_IDENTITY_H_
#define RELAY_MGMT_CALLER_IDENTITY_H_

// Who a caller is, and what it may ask for: the identity of a verified client
// certificate (read once per certificate, cached), its revocation and serial pin, and
// the one identity policy of Register and Renew.

#include <array>
#include <string>

#include <openssl/sha.h>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_tls.h"
#include "grpcpp/grpcpp.h"
#include "mgmt/cluster_registry.h"
#include "mgmt/signing_authority.h"
#include "pki/ca.h"

namespace relay::mgmt {

// The verified identity of a caller's client certificate.
struct CallerIdentity {
  std::string cluster;
  std::string serial;
  absl::Time not_after;
  bool issued_by_us = false;
};

// The identity policy: a CSR may name only the cluster the caller may have (the
// cluster of its certificate for Renew, the one it asks to register for Register).
// PERMISSION_DENIED otherwise, the same answer for both.
absl::Status CheckCsrIdentity(absl::string_view csr_cluster, absl::string_view allowed_cluster);

class CallerIdentifier {
 public:
  // `authority` (its current and retired intermediates; none with disableCa) tells
  // which certificates the server issued and pins; `registry` holds revocations and pins.
  CallerIdentifier(const SigningAuthority* authority, ClusterRegistry* registry)
      : authority_(authority), registry_(registry) {}

  using Done = absl::AnyInvocable<void(absl::StatusOr<CallerIdentity>) &&>;

  // Checks the caller's client certificate: presented and verified, a client
  // certificate for exactly one DNS label, not expired, not deregistered, and (for
  // certificates our own CA issued) a serial we issued. Revocation and pins are
  // checked on every call, never cached. `done` runs at once in the common case (the
  // current serial); a pending serial becoming current runs it on a store thread once
  // that is durable. Refusals carry their kind (common/refusal.h).
  void Identify(const grpc_tls::Peer& peer, absl::Time now, Done done);

 private:
  // What a certificate says, checked once per certificate (see the .cc).
  absl::StatusOr<CallerIdentity> CertificateIdentity(const grpc_tls::Peer& peer, absl::Time now);

  static constexpr size_t kCacheSize = 65536;
  const SigningAuthority* const authority_;
  ClusterRegistry* const registry_;
  absl::Mutex mu_;
  // Keyed by the SHA-256 of the certificate's PEM: 32 bytes instead of ~900 per agent.
  using CertificateDigest = std::array<uint8_t, SHA256_DIGEST_LENGTH>;
  absl::flat_hash_map<CertificateDigest, CallerIdentity> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_CALLER_IDENTITY_H_
