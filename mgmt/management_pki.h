#ifndef RELAY_MGMT_MANAGEMENT_PKI_H_
#define RELAY_MGMT_MANAGEMENT_PKI_H_

// The management server's secrets (DESIGN.md "Management server start"): the root CA,
// the intermediate signing CA, the server certificate and the identity token. Existing
// secrets are never overwritten; a broken one stops start-up with the secret and key.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/values.h"
#include "pki/ca.h"
#include "pki/certificate.h"
#include "pki/keys.h"
#include "secrets/secret_store.h"

namespace relay::mgmt {

struct ManagementPkiOptions {
  std::string ns = config::kDefaultNamespace;
  config::MgmtServerValues values;
  // Names the server certificate carries: the authority agents use, plus extra DNS
  // names and IP addresses (--server_san).
  std::string authority = config::kDefaultAuthority;
  std::vector<std::string> extra_dns_names;
  std::vector<std::string> extra_ip_addresses;
  pki::KeyType key_type = pki::KeyType::kEcdsaP256;
  absl::Duration root_lifetime = absl::Hours(24 * 3650);
  absl::Duration intermediate_lifetime = absl::Hours(24 * 1825);
  absl::Duration server_lifetime = absl::Hours(24 * 365);
};

struct ManagementPki {
  std::string root_bundle_pem;              // trust anchors (relay-root-tls-secret ca.crt)
  std::unique_ptr<pki::Issuer> signer;      // the intermediate; null with disableCa
  // Earlier intermediates whose leaves may still be live (the signing secret's
  // retired.crt), unexpired.
  std::vector<pki::UniquePtr<X509>> retired_intermediates;
  // During a root rotation, from its switch: the new root cross-certified by the old one
  // (root secret cross.crt, unexpired), appended to every chain the server hands out.
  std::string cross_certificates_pem;
  std::string token;                        // shared identity token; empty with disableCa
  std::vector<std::string> created;         // "ns/name" of each secret this call made
  pki::CertificateInfo server_certificate;  // the leaf in relay-server-tls-secret
};

// Creates what is missing and checks what exists, as the values ask.
absl::StatusOr<ManagementPki> EnsureManagementPki(secrets::SecretStore& store,
                                                  const ManagementPkiOptions& options,
                                                  absl::Time now);

// The signing secret's key holding the retired intermediates (PEM bundle).
inline constexpr char kRetiredIntermediatesKey[] = "retired.crt";
// The root secret's keys a root rotation (root_rotation.h) uses beside ca.crt (the trust
// bundle) and tls.crt + tls.key (the root that signs intermediates): the new root while
// it is only trusted (add), the new root cross-certified by the old one (from switch), the
// old roots kept for audit (retire).
inline constexpr char kNextRootCertificateKey[] = "next.crt";
inline constexpr char kNextRootKeyKey[] = "next.key";
inline constexpr char kCrossCertificatesKey[] = "cross.crt";
inline constexpr char kRetiredRootsKey[] = "retired.crt";

// The root secret's cross-certificates that are valid at `now` (PEM; "" when none).
std::string LiveCrossCertificates(const secrets::SecretData& root_secret, absl::Time now);

// A new intermediate under the root in relay-root-tls-secret (which must hold its
// tls.key), valid from `now` for `lifetime`, and the signing secret that holds it with
// `retired_pem`. FAILED_PRECONDITION saying what to do when the root key is absent.
struct NewIntermediate {
  std::unique_ptr<pki::Issuer> issuer;
  secrets::SecretData secret;  // tls.crt, tls.key, ca.crt (root bundle), retired.crt
};
absl::StatusOr<NewIntermediate> MakeIntermediate(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                                 const std::string& retired_pem, absl::Time now);

// The signing secret as stored: its issuer and retired intermediates (unexpired).
struct StoredSigningCa {
  std::unique_ptr<pki::Issuer> issuer;
  std::vector<pki::UniquePtr<X509>> retired;
};
absl::StatusOr<StoredSigningCa> ReadSigningCa(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                              absl::Time now);

// The namespace of the token secret: tokenSecret.namespace, or the release namespace.
std::string TokenNamespace(const config::MgmtServerValues& values, const std::string& ns);

// Issues a fresh server certificate from `signer` and writes relay-server-tls-secret
// (used at start-up and when the server renews its own certificate); its chain ends
// with `cross_certificates_pem`.
absl::StatusOr<pki::CertificateInfo> WriteServerCertificate(secrets::SecretStore& store, const ManagementPkiOptions& options,
                                    const pki::Issuer& signer, const std::string& root_bundle_pem,
                                    const std::string& cross_certificates_pem, absl::Time now);

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_MANAGEMENT_PKI_H_
