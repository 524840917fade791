#ifndef RELAY_MGMT_SIGNING_AUTHORITY_H_
#define RELAY_MGMT_SIGNING_AUTHORITY_H_
// The signing CA the server issues under, which changes while it runs when the
// intermediate rotates, and the retired intermediates whose leaves may still be live:
// the server still recognises those leaves as its own (serial pins, renewals) until
// each retired intermediate expires, which caps every leaf it issued.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pki/ca.h"
#include "pki/certificate.h"

namespace relay::mgmt {

// When an intermediate is to be replaced: once `fraction` of its lifetime remains, and
// never later than two client-certificate lifetimes before it expires (so every leaf
// issued under it can live its full lifetime and be renewed once under the next).
absl::Time IntermediateRotationDue(const pki::CertificateInfo& intermediate, absl::Duration client_cert_ttl,
                                   double fraction = 1.0 / 6);

// How close a CA is to expiry, for the log's warnings: 0 (more than 30 days left),
// 1 (30 days or less), 2 (7 days or less), 3 (1 day or less).
int ExpiryWarningLevel(absl::Duration left);

class SigningAuthority {
 public:
  // `current` may be null (disableCa: the server signs nothing).
  SigningAuthority(std::unique_ptr<pki::Issuer> current, std::vector<pki::UniquePtr<X509>> retired);

  // The CA new certificates are issued under; null with disableCa. A caller keeps what
  // it got for the whole issuance, even if a rotation happens meanwhile.
  std::shared_ptr<const pki::Issuer> current() const;
  // When this process started issuing under the current one (at construction, Replace or
  // Adopt). Issuances are dated before they take the signer, so one dated after this is
  // under the current one.
  absl::Time current_since() const;
  // True when `leaf` names the current or a retired (unexpired at `now`) intermediate.
  bool Issued(const pki::LeafSummary& leaf) const;
  // The retired intermediates (PEM bundle; empty when none), as the signing secret keeps
  // them in retired.crt.
  std::string RetiredPem(absl::Time now) const;

  // Issues under `next` from now on; the previous one joins the retired (dropped once
  // expired at `now`).
  void Replace(std::unique_ptr<pki::Issuer> next, absl::Time now);
  // Takes what another replica stored: `next` and its retired list. No-op when `next`
  // is the current one already.
  void Adopt(std::unique_ptr<pki::Issuer> next, std::vector<pki::UniquePtr<X509>> retired);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const pki::Issuer> current_ ABSL_GUARDED_BY(mu_);
  absl::Time current_since_ ABSL_GUARDED_BY(mu_) = absl::Now();
  std::vector<std::shared_ptr<X509>> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_SIGNING_AUTHORITY_H_
