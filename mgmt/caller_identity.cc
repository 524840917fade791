#include "mgmt/caller_identity.h"

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "pki/certificate.h"

namespace relay::mgmt {

absl::Status CheckCsrIdentity(absl::string_view csr_cluster, absl::string_view allowed_cluster) {
  if (csr_cluster == allowed_cluster) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("the CSR asks for cluster \"", csr_cluster.substr(0, 64),
                                                  "\" but this caller may only have \"",
                                                  allowed_cluster.substr(0, 64), "\""));
}

void CallerIdentifier::Identify(const grpc_tls::Peer& peer, absl::Time now, Done done) {
  if (!peer.authenticated || peer.certificate_pem.empty()) {
    std::move(done)(absl::UnauthenticatedError("this call needs a client certificate (mTLS): register the agent first"));
    return;
  }
  absl::StatusOr<CallerIdentity> identity = CertificateIdentity(peer, now);
  if (!identity.ok()) {
    std::move(done)(identity.status());
    return;
  }
  if (now > identity->not_after) {
    std::move(done)(absl::UnauthenticatedError("the client certificate has expired: register again"));
    return;
  }
  if (absl::Status deregistered = registry_->CheckNotDeregistered(identity->cluster); !deregistered.ok()) {
    std::move(done)(deregistered);
    return;
  }
  if (!identity->issued_by_us) {
    std::move(done)(*std::move(identity));
    return;
  }
  std::string cluster = identity->cluster;
  std::string serial = identity->serial;
  registry_->CheckIssuedSerialAsync(cluster, serial,
                                    [identity = *std::move(identity), done = std::move(done)](absl::Status pinned) mutable {
                                      if (!pinned.ok()) {
                                        std::move(done)(pinned);
                                        return;
                                      }
                                      std::move(done)(std::move(identity));
                                    });
}

// The TLS handshake verified the certificate's chain to the root bundle (the relay
// port's client roots are the same file), so here it is only read, without decoding
// its key: it must be a client certificate (extKeyUsage clientAuth) naming exactly one
// DNS label. Cached by its PEM, since an agent presents the same certificate on every
// call of a connection.
absl::StatusOr<CallerIdentity> CallerIdentifier::CertificateIdentity(const grpc_tls::Peer& peer, absl::Time now) {
  CertificateDigest digest;
  SHA256(reinterpret_cast<const uint8_t*>(peer.certificate_pem.data()), peer.certificate_pem.size(), digest.data());
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(digest);
    if (it != cache_.end()) return it->second;
  }
  absl::StatusOr<pki::LeafSummary> leaf = pki::SummarizeLeafPem(peer.certificate_pem);
  if (!leaf.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("client certificate refused: ", leaf.status().message()));
  }
  if (!leaf->client_auth) {
    return absl::PermissionDeniedError(
        "client certificate refused: it is not for client authentication (no extKeyUsage clientAuth)");
  }
  if (now < leaf->not_before) {
    return absl::PermissionDeniedError(absl::StrCat(
        "client certificate refused: it is not yet valid (from ", pki::FormatUtc(leaf->not_before), ", ",
        absl::ToInt64Seconds(leaf->not_before - now), " s after this server's clock): the clocks differ by "
        "about ", absl::ToInt64Seconds(leaf->not_before - now), " s; set both clocks right (NTP)"));
  }
  if (leaf->dns_names.size() != 1 || !IsDnsLabel(leaf->dns_names[0])) {
    return absl::PermissionDeniedError("client certificate must carry exactly one DNS SAN, the cluster name");
  }
  CallerIdentity identity{leaf->dns_names[0], leaf->serial_hex, leaf->not_after, false};
  identity.issued_by_us = authority_ != nullptr && authority_->Issued(*leaf);
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= kCacheSize) cache_.clear();
  cache_.emplace(digest, identity);
  return identity;
}

}  // namespace relay::mgmt
