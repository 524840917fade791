#include "mgmt/signing_authority.h"

#include <algorithm>

#include "pki/pem.h"

namespace relay::mgmt {
namespace {

std::shared_ptr<X509> Shared(pki::UniquePtr<X509> cert) { return std::shared_ptr<X509>(cert.release(), X509_free); }

bool ExpiredAt(const X509* cert, absl::Time now) {
  absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(cert);
  return !info.ok() || now >= info->not_after;
}

}  // namespace

absl::Time IntermediateRotationDue(const pki::CertificateInfo& intermediate, absl::Duration client_cert_ttl,
                                   double fraction) {
  const absl::Duration lifetime = intermediate.not_after - intermediate.not_before;
  return intermediate.not_after - std::max(lifetime * fraction, client_cert_ttl * 2);
}

int ExpiryWarningLevel(absl::Duration left) {
  if (left <= absl::Hours(24)) return 3;
  if (left <= absl::Hours(24 * 7)) return 2;
  if (left <= absl::Hours(24 * 30)) return 1;
  return 0;
}

SigningAuthority::SigningAuthority(std::unique_ptr<pki::Issuer> current, std::vector<pki::UniquePtr<X509>> retired)
    : current_(std::move(current)) {
  for (auto& cert : retired) retired_.push_back(Shared(std::move(cert)));
}

absl::Time SigningAuthority::current_since() const {
  absl::MutexLock lock(&mu_);
  return current_since_;
}

std::shared_ptr<const pki::Issuer> SigningAuthority::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

bool SigningAuthority::Issued(const pki::LeafSummary& leaf) const {
  absl::MutexLock lock(&mu_);
  if (current_ && pki::NamesIssuer(current_->certificate(), leaf)) return true;
  return std::any_of(retired_.begin(), retired_.end(),
                     [&](const std::shared_ptr<X509>& cert) { return pki::NamesIssuer(cert.get(), leaf); });
}

std::string SigningAuthority::RetiredPem(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  std::string pem;
  for (const auto& cert : retired_) {
    if (ExpiredAt(cert.get(), now)) continue;
    if (absl::StatusOr<std::string> one = pki::CertificateToPem(cert.get()); one.ok()) pem += *one;
  }
  return pem;
}

void SigningAuthority::Replace(std::unique_ptr<pki::Issuer> next, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (current_ && X509_cmp(current_->certificate(), next->certificate()) != 0) {
    X509* previous = const_cast<X509*>(current_->certificate());
    X509_up_ref(previous);
    retired_.push_back(Shared(pki::UniquePtr<X509>(previous)));
  }
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const std::shared_ptr<X509>& cert) { return ExpiredAt(cert.get(), now); }),
                 retired_.end());
  current_ = std::move(next);
  current_since_ = absl::Now();
}

void SigningAuthority::Adopt(std::unique_ptr<pki::Issuer> next, std::vector<pki::UniquePtr<X509>> retired) {
  absl::MutexLock lock(&mu_);
  if (current_ && X509_cmp(current_->certificate(), next->certificate()) == 0) return;
  current_ = std::move(next);
  current_since_ = absl::Now();
  retired_.clear();
  for (auto& cert : retired) retired_.push_back(Shared(std::move(cert)));
}

}  // namespace relay::mgmt
