#include "mgmt/core.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "pki/rotation.h"
#include "tokens/identity_token.h"

namespace relay::mgmt {

Core::Core(ServerOptions options, std::unique_ptr<state::StateStore> state, ManagementPki pki,
           std::unique_ptr<ClusterRegistry> registry)
    : options_(std::move(options)),
      state_(std::move(state)),
      pki_(std::move(pki)),
      authority_(std::move(pki_.signer), std::move(pki_.retired_intermediates)),
      registry_(std::move(registry)),
      bootstrap_tokens_(state_.get(), options_.ns) {
  {
    absl::MutexLock lock(&server_cert_mu_);
    server_certificate_ = pki_.server_certificate;
  }
  {
    absl::MutexLock lock(&token_mu_);
    shared_token_ = pki_.token;
  }
  {
    absl::MutexLock lock(&bundle_mu_);
    trust_bundle_ = std::make_shared<const TrustBundle>(
        TrustBundle{pki_.root_bundle_pem, pki::Sha256Hex(pki_.root_bundle_pem), pki_.cross_certificates_pem});
  }
  for (const ClusterRecord& record : registry_->List()) {
    if (record.deregistered) continue;
    metrics_.SetConnected(record.name, false);
    metrics_.client_certificate_expiry.Set({record.name}, absl::ToUnixSeconds(record.not_after));
  }
  SetCaMetrics();
}

Core::~Core() {
  root_watch_.reset();
  signing_watch_.reset();
  token_watch_.reset();
}

namespace {

constexpr char kPreviousTokenKey[] = "shared-token/previous";

// "hash=<hex> until=<unix seconds>"
bool ParsePreviousToken(absl::string_view value, std::string* hash, absl::Time* until) {
  int64_t seconds = 0;
  for (absl::string_view field : absl::StrSplit(value, ' ')) {
    if (absl::ConsumePrefix(&field, "hash=")) *hash = std::string(field);
    if (absl::ConsumePrefix(&field, "until=") && absl::SimpleAtoi(field, &seconds)) *until = absl::FromUnixSeconds(seconds);
  }
  return !hash->empty() && seconds > 0;
}

}  // namespace

bool Core::IsSharedToken(absl::string_view token) const {
  absl::MutexLock lock(&token_mu_);
  if (tokens::TokensEqual(token, shared_token_)) return true;
  return absl::Now() < previous_token_until_ && !previous_token_hash_.empty() &&
         tokens::TokensEqual(tokens::TokenHash(token), previous_token_hash_);
}

absl::StatusOr<absl::Time> Core::RotateSharedToken(absl::Duration overlap, absl::Time now) {
  const config::MgmtServerValues& values = options_.values;
  if (values.disable_ca) return absl::FailedPreconditionError("this server signs nothing (disableCa): it has no token");
  if (values.disable_token_generation) {
    return absl::FailedPreconditionError(
        "disableTokenGeneration is set: put the new token in the token secret yourself");
  }
  if (overlap < absl::ZeroDuration()) return absl::InvalidArgumentError("the overlap must not be negative");
  std::string current;
  {
    absl::MutexLock lock(&token_mu_);
    current = shared_token_;
  }
  ASSIGN_OR_RETURN(std::string next, tokens::GenerateToken());
  const absl::Time until = now + overlap;
  // The previous one's hash first: once the secret changes, replicas reload both.
  const std::string record = absl::StrCat("hash=", tokens::TokenHash(current), " until=", absl::ToUnixSeconds(until));
  int64_t revision = 0;
  if (absl::StatusOr<state::Record> stored = state_->Get(kPreviousTokenKey); stored.ok()) revision = stored->revision;
  RETURN_IF_ERROR(state_->CompareAndSetAndWait(kPreviousTokenKey, record, revision).status());
  RETURN_IF_ERROR(state_->secrets().Put(TokenNamespace(values, options_.ns), values.token_secret.name,
                                        {{values.token_secret.key, next}}));
  {
    absl::MutexLock lock(&token_mu_);
    shared_token_ = next;
    previous_token_hash_ = tokens::TokenHash(current);
    previous_token_until_ = until;
  }
  LogInfo("shared_token_rotated", {{"previous_accepted_until", pki::FormatUtc(until)}});
  return until;
}

void Core::WatchSharedToken() {
  if (pki_.token.empty()) return;
  ReloadSharedToken();
  token_watch_ = state_->secrets().Watch(TokenNamespace(options_.values, options_.ns),
                                         options_.values.token_secret.name, [this] { ReloadSharedToken(); });
}

void Core::ReloadSharedToken() {
  const config::MgmtServerValues& values = options_.values;
  absl::StatusOr<std::string> token = tokens::LoadToken(state_->secrets(), TokenNamespace(values, options_.ns),
                                                        values.token_secret.name, values.token_secret.key);
  std::string hash;
  absl::Time until = absl::InfinitePast();
  if (absl::StatusOr<state::Record> previous = state_->Get(kPreviousTokenKey); previous.ok()) {
    ParsePreviousToken(previous->value, &hash, &until);
  }
  absl::MutexLock lock(&token_mu_);
  if (token.ok() && !token->empty()) shared_token_ = *token;
  previous_token_hash_ = hash;
  previous_token_until_ = until;
}

void Core::SetCaMetrics() {
  if (auto roots = pki::ParseCertificateChainPem(root_bundle_pem()); roots.ok()) {
    if (auto info = pki::InspectCertificate((*roots)[0].get()); info.ok()) {
      metrics_.certificate_expiry.Set({"root"}, absl::ToUnixSeconds(info->not_after));
    }
  }
  if (std::shared_ptr<const pki::Issuer> signer = authority_.current()) {
    if (auto info = pki::InspectCertificate(signer->certificate()); info.ok()) {
      metrics_.certificate_expiry.Set({"intermediate"}, absl::ToUnixSeconds(info->not_after));
    }
  }
  absl::MutexLock lock(&server_cert_mu_);
  metrics_.certificate_expiry.Set({"server"}, absl::ToUnixSeconds(server_certificate_.not_after));
}

relay::v1::CertificateResponse Core::Response(const pki::Issuer::IssuedPem& issued) const {
  relay::v1::CertificateResponse response;
  std::shared_ptr<const TrustBundle> trust = trust_bundle();
  response.set_certificate_chain_pem(issued.certificate_pem + trust->cross_pem);
  response.set_root_ca_pem(trust->pem);
  response.set_serial(issued.serial_hex);
  response.set_not_after_unix(absl::ToUnixSeconds(issued.not_after));
  return response;
}

absl::Status Core::CheckAgentVersion(const std::string& version) {
  int major = -1, minor = -1, patch = -1;
  absl::string_view text = version;
  bool readable = absl::ConsumePrefix(&text, "relay-agent/");
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  readable = readable && parts.size() == 3 && absl::SimpleAtoi(parts[0], &major) &&
             absl::SimpleAtoi(parts[1], &minor) && absl::SimpleAtoi(parts[2], &patch);
  if (!readable) {
    metrics_.agent_version_skew.Increment({"unknown"});
    return absl::OkStatus();
  }
  if (major != kVersionMajor) {
    metrics_.agent_version_skew.Increment({"major"});
    return absl::FailedPreconditionError(absl::StrCat(
        "agent version ", text, " is not compatible with this management server (version ", kVersion,
        "): agents and server must share the major version; upgrade the agent to ", kVersionMajor, ".x"));
  }
  if (minor != kVersionMinor) {
    metrics_.agent_version_skew.Increment({"minor"});
  } else if (patch != kVersionPatch) {
    metrics_.agent_version_skew.Increment({"patch"});
  }
  return absl::OkStatus();
}

void Core::MaybeRenewServerCertificate(absl::Time now) {
  std::shared_ptr<const pki::Issuer> signer = authority_.current();
  if (!signer) return;
  pki::CertificateInfo current;
  {
    absl::MutexLock lock(&server_cert_mu_);
    current = server_certificate_;
  }
  absl::StatusOr<absl::Time> due = pki::RenewAt(current, options_.server_cert_grace_ratio);
  if (!due.ok() || now < *due) return;
  // Another replica sharing the store may have renewed it already: take theirs.
  if (absl::StatusOr<pki::CertificateInfo> stored = StoredServerCertificate(); stored.ok() &&
      stored->serial_hex != current.serial_hex) {
    absl::StatusOr<absl::Time> stored_due = pki::RenewAt(*stored, options_.server_cert_grace_ratio);
    if (stored_due.ok() && now < *stored_due) {
      absl::MutexLock lock(&server_cert_mu_);
      server_certificate_ = *stored;
      metrics_.certificate_expiry.Set({"server"}, absl::ToUnixSeconds(stored->not_after));
      return;
    }
  }
  if (!LeadsHousekeeping()) return;  // the leader renews it; we take it on a later sweep
  absl::StatusOr<pki::CertificateInfo> renewed =
      WriteServerCertificate(state_->secrets(), PkiOptions(options_), *signer, root_bundle_pem(),
                             trust_bundle()->cross_pem, now);
  if (!renewed.ok()) {
    LogError("server_certificate_renewal_failed", {{"error", std::string(renewed.status().message())}});
    return;
  }
  LogInfo("server_certificate_renewed", {{"old_serial", current.serial_hex}, {"serial", renewed->serial_hex}});
  absl::MutexLock lock(&server_cert_mu_);
  server_certificate_ = *renewed;
  metrics_.certificate_expiry.Set({"server"}, absl::ToUnixSeconds(renewed->not_after));
}

absl::StatusOr<pki::CertificateInfo> Core::StoredServerCertificate() {
  ASSIGN_OR_RETURN(secrets::SecretData secret, state_->secrets().Get(options_.ns, options_.values.tls_secret));
  ASSIGN_OR_RETURN(auto chain, pki::ParseCertificateChainPem(secret["tls.crt"]));
  if (chain.empty()) return absl::NotFoundError("no server certificate");
  return pki::InspectCertificate(chain[0].get());
}

ManagementPkiOptions Core::PkiOptions(const ServerOptions& options) {
  ManagementPkiOptions pki_options;
  pki_options.ns = options.ns;
  pki_options.values = options.values;
  pki_options.authority = options.authority;
  pki_options.extra_dns_names = options.server_dns_names;
  pki_options.extra_ip_addresses = options.server_ip_addresses;
  pki_options.server_lifetime = options.server_cert_lifetime;
  pki_options.intermediate_lifetime = options.intermediate_lifetime;
  pki_options.root_lifetime = options.root_lifetime;
  return pki_options;
}

void Core::MaybeRotateIntermediate(absl::Time now) {
  std::shared_ptr<const pki::Issuer> signer = authority_.current();
  if (!signer || !LeadsHousekeeping() || now < next_rotation_attempt_) return;
  absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(signer->certificate());
  if (!info.ok() || now < IntermediateRotationDue(*info, options_.values.client_cert_ttl)) return;
  next_rotation_attempt_ = now + absl::Minutes(1);
  if (absl::StatusOr<pki::CertificateInfo> rotated = RotateIntermediate(now, "rotation point reached"); !rotated.ok()) {
    // Tried again on the next sweep; the log says what an operator can do meanwhile.
    LogError("intermediate_rotation_failed", {{"error", std::string(rotated.status().message())},
                                             {"not_after", pki::FormatUtc(info->not_after)}});
  }
}

std::string Core::RetiredAfterRotation(absl::Time now) const {
  // The current one joins the retired ones still stored, unless it has expired.
  std::string retired_pem = authority_.RetiredPem(now);
  std::shared_ptr<const pki::Issuer> current = authority_.current();
  if (absl::StatusOr<pki::CertificateInfo> old = pki::InspectCertificate(current->certificate());
      old.ok() && now < old->not_after) {
    retired_pem = current->certificate_pem() + retired_pem;
  }
  return retired_pem;
}

absl::StatusOr<pki::CertificateInfo> Core::RotateIntermediate(absl::Time now, absl::string_view why) {
  absl::MutexLock lock(&rotation_mu_);
  if (!authority_.current()) {
    return absl::FailedPreconditionError("this server signs nothing (disableCa): it has no intermediate");
  }
  ASSIGN_OR_RETURN(NewIntermediate made,
                   MakeIntermediate(state_->secrets(), PkiOptions(options_), RetiredAfterRotation(now), now));
  return InstallIntermediate(std::move(made), now, why);
}

absl::StatusOr<pki::CertificateInfo> Core::StageIntermediate(const std::string& certificate_pem,
                                                             const std::string& key_pem, absl::Time now) {
  absl::MutexLock lock(&rotation_mu_);
  if (!authority_.current()) {
    return absl::FailedPreconditionError("this server signs nothing (disableCa): it has no intermediate");
  }
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> chain, pki::ParseCertificateChainPem(certificate_pem));
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::ParsePrivateKeyPem(key_pem));
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> roots, pki::ParseCertificateChainPem(root_bundle_pem()));
  if (absl::Status chains = pki::VerifyChain(chain[0].get(), pki::Borrow(chain), pki::Borrow(roots), now);
      !chains.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the staged intermediate does not chain to this server's root: ", chains.message()));
  }
  ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(chain[0].get()));
  const absl::Duration needed = options_.values.client_cert_ttl * 2;
  if (info.not_after - now <= needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the staged intermediate expires at ", pki::FormatUtc(info.not_after), ", within two client certificate "
        "lifetimes (", absl::FormatDuration(needed), "): it would be replaced at once; stage a longer-lived one"));
  }
  absl::StatusOr<std::unique_ptr<pki::Issuer>> issuer = pki::Issuer::Create(std::move(chain[0]), std::move(key), now);
  if (!issuer.ok()) return absl::InvalidArgumentError(absl::StrCat("the staged intermediate: ", issuer.status().message()));
  NewIntermediate made;
  made.issuer = *std::move(issuer);
  made.secret = {{"tls.crt", certificate_pem}, {"tls.key", key_pem}, {"ca.crt", root_bundle_pem()}};
  if (std::string retired = RetiredAfterRotation(now); !retired.empty()) made.secret[kRetiredIntermediatesKey] = retired;
  return InstallIntermediate(std::move(made), now, "staged by an operator");
}

absl::StatusOr<pki::CertificateInfo> Core::InstallIntermediate(NewIntermediate made, absl::Time now,
                                                               absl::string_view why) {
  ManagementPkiOptions pki_options = PkiOptions(options_);
  ASSIGN_OR_RETURN(pki::CertificateInfo made_info, pki::InspectCertificate(made.issuer->certificate()));
  if (absl::Status written = state_->secrets().Put(options_.ns, options_.values.signing_tls_secret, made.secret);
      !written.ok()) {
    return absl::Status(written.code(), absl::StrCat("cannot store the new intermediate: ", written.message()));
  }
  std::shared_ptr<const pki::Issuer> previous = authority_.current();
  authority_.Replace(std::move(made.issuer), now);
  SetCaMetrics();
  LogInfo("intermediate_rotated", {{"why", std::string(why)},
                                   {"serial", made_info.serial_hex},
                                   {"not_after", pki::FormatUtc(made_info.not_after)}});
  // The server certificate under the new one too, so the relay port's chain moves on.
  std::shared_ptr<const pki::Issuer> signer = authority_.current();
  absl::StatusOr<pki::CertificateInfo> server =
      WriteServerCertificate(state_->secrets(), pki_options, *signer, root_bundle_pem(), trust_bundle()->cross_pem, now);
  if (!server.ok()) {
    LogError("server_certificate_renewal_failed", {{"error", std::string(server.status().message())}});
  } else {
    absl::MutexLock server_lock(&server_cert_mu_);
    server_certificate_ = *server;
    metrics_.certificate_expiry.Set({"server"}, absl::ToUnixSeconds(server->not_after));
  }
  NoticeRootSwitch(previous->certificate(), signer->certificate());
  return made_info;
}

void Core::WatchSigningCa() {
  if (!authority_.current()) return;
  signing_watch_ = state_->secrets().Watch(options_.ns, options_.values.signing_tls_secret,
                                           [this] { AdoptStoredSigningCa(); });
}

void Core::AdoptStoredSigningCa() {
  absl::StatusOr<StoredSigningCa> stored = ReadSigningCa(state_->secrets(), PkiOptions(options_), absl::Now());
  if (!stored.ok()) {
    LogWarning("signing_ca_not_reloaded", {{"error", std::string(stored.status().message())}});
    return;
  }
  std::shared_ptr<const pki::Issuer> previous = authority_.current();
  authority_.Adopt(std::move(stored->issuer), std::move(stored->retired));
  SetCaMetrics();
  std::shared_ptr<const pki::Issuer> adopted = authority_.current();
  if (previous && adopted && previous != adopted) NoticeRootSwitch(previous->certificate(), adopted->certificate());
}

void Core::WarnOfCaExpiry(absl::Time now) {
  if (now < next_expiry_check_) return;
  next_expiry_check_ = now + absl::Minutes(1);
  auto check = [&](const std::string& role, const X509* cert, const std::string& advice) {
    absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(cert);
    if (!info.ok()) return;
    const int level = ExpiryWarningLevel(info->not_after - now);
    int& warned = expiry_warned_[info->serial_hex];
    if (level <= warned) return;
    warned = level;
    LogWarning("ca_expires_soon", {{"certificate", role},
                                   {"serial", info->serial_hex},
                                   {"not_after", pki::FormatUtc(info->not_after)},
                                   {"hours_left", absl::StrCat(absl::ToInt64Hours(info->not_after - now))},
                                   {"advice", advice}});
  };
  if (auto roots = pki::ParseCertificateChainPem(root_bundle_pem()); roots.ok()) {
    for (const auto& root : *roots) {
      check("root", root.get(), "rotate it before then: relayctl ca rotate-root (README \"The root rotates in phases\")");
    }
  }
  if (std::shared_ptr<const pki::Issuer> signer = authority_.current()) {
    check("intermediate", signer->certificate(),
          "it is replaced by itself before this unless that fails (see intermediate_rotation_failed); "
          "relayctl ca rotate-intermediate replaces it now");
  }
}

std::shared_ptr<const Core::TrustBundle> Core::trust_bundle() const {
  absl::MutexLock lock(&bundle_mu_);
  return trust_bundle_;
}

absl::Time Core::root_switched_at() const {
  absl::MutexLock lock(&switched_mu_);
  return root_switched_at_;
}

void Core::OnRootSwitch(std::function<void()> listener) {
  absl::MutexLock lock(&switch_listener_mu_);
  switch_listener_ = std::move(listener);
}

void Core::NoticeRootSwitch(const X509* previous, const X509* next) {
  if (pki::SameIssuer(previous, next)) return;
  {
    absl::MutexLock lock(&switched_mu_);
    root_switched_at_ = authority_.current_since();
  }
  LogInfo("root_switched", {{"intermediate", pki::SerialHex(next)}});
  absl::MutexLock lock(&switch_listener_mu_);
  if (switch_listener_) switch_listener_();
}

void Core::OnTrustBundleChange(std::function<void()> listener) {
  absl::MutexLock lock(&bundle_listener_mu_);
  bundle_listener_ = std::move(listener);
}

void Core::WatchRootBundle() {
  root_watch_ = state_->secrets().Watch(options_.ns, options_.values.root_tls_secret, [this] { ReloadRootBundle(); });
}

void Core::ReloadRootBundle() {
  absl::StatusOr<secrets::SecretData> secret = state_->secrets().Get(options_.ns, options_.values.root_tls_secret);
  if (!secret.ok() || !secret->count("ca.crt")) return;  // a deleted root keeps the one held
  const std::string bundle = secret->at("ca.crt");
  const std::string cross = LiveCrossCertificates(*secret, absl::Now());
  if (std::shared_ptr<const TrustBundle> held = trust_bundle(); bundle == held->pem && cross == held->cross_pem) return;
  absl::Status usable = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> roots, pki::ParseCertificateChainPem(bundle));
    const absl::Time now = absl::Now();
    for (const auto& root : roots) RETURN_IF_ERROR(pki::CheckCaCertificate(root.get(), now, "root certificate"));
    if (std::shared_ptr<const pki::Issuer> signer = authority_.current()) {
      absl::Status chains = pki::VerifyChain(signer->certificate(), {}, pki::Borrow(roots), now);
      if (!chains.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "no root in it issued the current intermediate (", chains.message(), "): add roots beside the old one"));
      }
    }
    return absl::OkStatus();
  }();
  if (!usable.ok()) {
    LogError("trust_bundle_change_refused", {{"secret", absl::StrCat(options_.ns, "/", options_.values.root_tls_secret)},
                                             {"error", std::string(usable.message())}});
    return;
  }
  std::string digest = pki::Sha256Hex(bundle);
  bool roots_changed = true;
  {
    absl::MutexLock lock(&bundle_mu_);
    roots_changed = trust_bundle_->pem != bundle;
    trust_bundle_ = std::make_shared<const TrustBundle>(TrustBundle{bundle, digest, cross});
  }
  SetCaMetrics();
  // A new cross-certificate alone is news only to agents that lack the new root, and
  // they are sent the bundle when they connect.
  if (!roots_changed) return;
  LogInfo("trust_bundle_changed", {{"digest", digest.substr(0, 12)}});
  absl::MutexLock lock(&bundle_listener_mu_);
  if (bundle_listener_) bundle_listener_();
}

}  // namespace relay::mgmt
