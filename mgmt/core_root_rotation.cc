// Core's part of a root rotation (root_rotation.h): each phase's effects on the root
// secret and the signing CA, the gates, and the persisted record that makes it resumable.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "mgmt/core.h"
#include "pki/ca.h"
#include "pki/certificate.h"
#include "pki/keys.h"
#include "pki/pem.h"

namespace relay::mgmt {
namespace {

using secrets::SecretData;

absl::StatusOr<std::string> SerialOfPem(const std::string& pem) {
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> certs, pki::ParseCertificateChainPem(pem));
  return pki::SerialHex(certs[0].get());
}

// The bundle's certificates other than the one with `serial` (PEM), and that one's PEM.
struct SplitBundle {
  std::string others;
  std::string removed;
};
absl::StatusOr<SplitBundle> SplitOut(const std::string& bundle_pem, const std::string& serial) {
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> certs, pki::ParseCertificateChainPem(bundle_pem));
  SplitBundle split;
  for (const auto& cert : certs) {
    ASSIGN_OR_RETURN(std::string pem, pki::CertificateToPem(cert.get()));
    (pki::SerialHex(cert.get()) == serial ? split.removed : split.others) += pem;
  }
  return split;
}

// `bundle_pem` with `pem` after it, on a line of its own (an operator's ca.crt may lack
// its last newline).
std::string WithAppended(const std::string& bundle_pem, const std::string& pem) {
  return bundle_pem.empty() || bundle_pem.back() == '\n' ? bundle_pem + pem : bundle_pem + "\n" + pem;
}

bool BundleHolds(const std::string& bundle_pem, const std::string& serial) {
  absl::StatusOr<SplitBundle> split = SplitOut(bundle_pem, serial);
  return split.ok() && !split->removed.empty();
}

RootRotationPhase NextPhase(RootRotationPhase phase) {
  switch (phase) {
    case RootRotationPhase::kAdd: return RootRotationPhase::kSwitch;
    case RootRotationPhase::kSwitch: return RootRotationPhase::kRetire;
    default: return RootRotationPhase::kDone;
  }
}

absl::Status InRootSecret(const std::string& ns, const std::string& name, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("secret ", ns, "/", name, ": ", status.message()));
}

// A new root (self-signed, named after its birth so it differs from every earlier one)
// with its key, as the root secret's next.crt / next.key hold it.
absl::StatusOr<std::pair<std::string, std::string>> MakeRoot(const ManagementPkiOptions& options, absl::Time now) {
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey(options.key_type));
  ASSIGN_OR_RETURN(pki::UniquePtr<X509> root,
                   pki::CreateSelfSignedCertificate(
                       key.get(), pki::RootCaSpec(absl::StrCat("relay-root-ca ", pki::FormatUtc(now)), now,
                                                  options.root_lifetime)));
  ASSIGN_OR_RETURN(std::string cert_pem, pki::CertificateToPem(root.get()));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));
  return std::make_pair(cert_pem, key_pem);
}

// A digest no stored bundle has: for a gate on a bundle that is not in effect yet.
constexpr char kNoBundle[] = "(not in effect)";

}  // namespace

absl::StatusOr<RootRotation> Core::StoredRootRotation() {
  ASSIGN_OR_RETURN(state::Record record, state_->Get(kRootRotationKey));
  ASSIGN_OR_RETURN(RootRotation rotation, ParseRootRotation(record.value));
  rotation.revision = record.revision;
  return rotation;
}

absl::Status Core::StoreRootRotation(RootRotation& rotation) {
  absl::StatusOr<int64_t> revision =
      state_->CompareAndSetAndWait(kRootRotationKey, FormatRootRotation(rotation), rotation.revision);
  if (absl::IsFailedPrecondition(revision.status()) || absl::IsAborted(revision.status())) {
    return absl::AbortedError(
        "the root rotation record changed meanwhile (another replica or operator moved it): look at relayctl ca "
        "status and try again");
  }
  RETURN_IF_ERROR(revision.status());
  rotation.revision = *revision;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Core::StartRootRotation(absl::Time now, const StagedRoot& staged_root) {
  if (!authority_.current()) {
    return absl::FailedPreconditionError("this server signs nothing (disableCa): it has no root to rotate");
  }
  const std::string& ns = options_.ns;
  const std::string& name = options_.values.root_tls_secret;
  ASSIGN_OR_RETURN(SecretData root, state_->secrets().Get(ns, name));
  if (!root.count("ca.crt")) return InRootSecret(ns, name, absl::FailedPreconditionError("has no ca.crt"));
  if (!root.count("tls.key") || !root.count("tls.crt")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secret ", ns, "/", name, " holds no root key (tls.crt, tls.key), so this server cannot make the new "
        "root's intermediate nor cross-certify it: rotate a root you keep yourself by adding your new root to ca.crt "
        "and staging an intermediate under it (relayctl ca stage)"));
  }
  RootRotation rotation;
  absl::StatusOr<RootRotation> stored = StoredRootRotation();
  if (stored.ok()) {
    rotation.revision = stored->revision;  // a finished one: this one replaces its record
  } else if (!absl::IsNotFound(stored.status())) {
    return stored.status();
  }
  ASSIGN_OR_RETURN(rotation.previous_serial, SerialOfPem(root.at("tls.crt")));
  std::pair<std::string, std::string> made;
  if (staged_root.certificate_pem.empty() && staged_root.key_pem.empty()) {
    ASSIGN_OR_RETURN(made, MakeRoot(PkiOptions(options_), now));
  } else {
    ASSIGN_OR_RETURN(made, CheckStagedRoot(staged_root, now));
  }
  ASSIGN_OR_RETURN(rotation.next_serial, SerialOfPem(made.first));
  rotation.phase = RootRotationPhase::kAdd;
  rotation.started_at = now;
  // The record first: the one that claims it drives. A crash before the secret is written
  // leaves a record whose root is nowhere, and EnsureRootRotationPhase makes another.
  RETURN_IF_ERROR(StoreRootRotation(rotation));
  root[kNextRootCertificateKey] = made.first;
  root[kNextRootKeyKey] = made.second;
  root["ca.crt"] = WithAppended(root.at("ca.crt"), made.first);
  RETURN_IF_ERROR(state_->secrets().Put(ns, name, root));
  ReloadRootBundle();
  LogInfo("root_rotation_started", {{"previous", rotation.previous_serial}, {"next", rotation.next_serial}});
  return absl::StrCat("root rotation started: the new root ", rotation.next_serial,
                      " is trusted beside the current one and sent to every agent; the rotation switches to it by "
                      "itself once every registered cluster has stored it (relayctl ca status shows who has)");
}

absl::Status Core::EnsureRootRotationPhase(RootRotation& rotation, absl::Time now) {
  const std::string& ns = options_.ns;
  const std::string& name = options_.values.root_tls_secret;
  ASSIGN_OR_RETURN(SecretData root, state_->secrets().Get(ns, name));
  if (!root.count("ca.crt")) return InRootSecret(ns, name, absl::FailedPreconditionError("has no ca.crt"));
  switch (rotation.phase) {
    case RootRotationPhase::kAdd: {
      bool has_next = false;
      if (root.count(kNextRootCertificateKey) && root.count(kNextRootKeyKey)) {
        absl::StatusOr<std::string> serial = SerialOfPem(root.at(kNextRootCertificateKey));
        has_next = serial.ok() && *serial == rotation.next_serial;
      }
      if (!has_next) {
        // The driver died between claiming the record and storing the new root: make
        // another (no one can have trusted the lost one, it was never pushed).
        ASSIGN_OR_RETURN(auto made, MakeRoot(PkiOptions(options_), now));
        ASSIGN_OR_RETURN(rotation.next_serial, SerialOfPem(made.first));
        RETURN_IF_ERROR(StoreRootRotation(rotation));
        root[kNextRootCertificateKey] = made.first;
        root[kNextRootKeyKey] = made.second;
      }
      if (!has_next || !BundleHolds(root.at("ca.crt"), rotation.next_serial)) {
        root["ca.crt"] = WithAppended(root.at("ca.crt"), root.at(kNextRootCertificateKey));
        RETURN_IF_ERROR(state_->secrets().Put(ns, name, root));
        ReloadRootBundle();  // pushed now, not when the watch notices
      }
      return absl::OkStatus();
    }
    case RootRotationPhase::kSwitch: {
      ASSIGN_OR_RETURN(std::string signing_root, SerialOfPem(root.at("tls.crt")));
      if (signing_root != rotation.next_serial) {
        if (!root.count(kNextRootCertificateKey) || !root.count(kNextRootKeyKey)) {
          return InRootSecret(ns, name, absl::DataLossError(absl::StrCat(
                                            "the new root ", rotation.next_serial, " (next.crt, next.key) is gone: ",
                                            "restore the secret from a backup, or delete state record ",
                                            kRootRotationKey, " and start the rotation again")));
        }
        ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> next, pki::ParseCertificateChainPem(root.at(kNextRootCertificateKey)));
        ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> old, pki::ParseCertificateChainPem(root.at("tls.crt")));
        ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> old_key, pki::ParsePrivateKeyPem(root.at("tls.key")));
        std::string cross_pem;
        if (options_.root_cross_certificate_lifetime > absl::ZeroDuration()) {
          ASSIGN_OR_RETURN(std::unique_ptr<pki::Issuer> old_issuer,
                           pki::Issuer::Create(std::move(old[0]), std::move(old_key), now));
          ASSIGN_OR_RETURN(pki::UniquePtr<X509> cross,
                           pki::CrossCertify(*old_issuer, next[0].get(), now, options_.root_cross_certificate_lifetime));
          ASSIGN_OR_RETURN(cross_pem, pki::CertificateToPem(cross.get()));
        }
        root["tls.crt"] = root.at(kNextRootCertificateKey);
        root["tls.key"] = root.at(kNextRootKeyKey);
        root.erase(kNextRootCertificateKey);
        root.erase(kNextRootKeyKey);
        if (cross_pem.empty()) {
          root.erase(kCrossCertificatesKey);
        } else {
          root[kCrossCertificatesKey] = cross_pem;
        }
        RETURN_IF_ERROR(state_->secrets().Put(ns, name, root));
        ReloadRootBundle();  // the cross-certificate rides in every chain from now on
      }
      std::shared_ptr<const pki::Issuer> signer = authority_.current();
      ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> new_root, pki::ParseCertificateChainPem(root.at("tls.crt")));
      if (!pki::IsIssuedBy(new_root[0].get(), signer->certificate())) {
        RETURN_IF_ERROR(RotateIntermediate(now, "root rotation: switch to the new root").status());
      }
      if (rotation.switched_at == absl::InfinitePast()) {
        // When the new intermediate took over here: an issuance is dated before it takes
        // the signer, so one dated after this moment is under the new root.
        rotation.switched_at = authority_.current_since();
        RETURN_IF_ERROR(StoreRootRotation(rotation));
      }
      return absl::OkStatus();
    }
    case RootRotationPhase::kRetire: {
      ASSIGN_OR_RETURN(SplitBundle split, SplitOut(root.at("ca.crt"), rotation.previous_serial));
      if (!split.removed.empty()) {
        if (split.others.empty()) {
          return InRootSecret(ns, name, absl::FailedPreconditionError("ca.crt would be left empty"));
        }
        root["ca.crt"] = split.others;
        root[kRetiredRootsKey] = WithAppended(root.count(kRetiredRootsKey) ? root.at(kRetiredRootsKey) : "", split.removed);
        RETURN_IF_ERROR(state_->secrets().Put(ns, name, root));
        ReloadRootBundle();
      }
      return absl::OkStatus();
    }
    case RootRotationPhase::kDone:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

Core::RootRotationReport Core::Report(const RootRotation& rotation, absl::Time now) {
  RootRotationReport report;
  report.rotation = rotation;
  std::vector<ClusterRecord> records = registry_->List();
  std::shared_ptr<const TrustBundle> trust = trust_bundle();
  switch (rotation.phase) {
    case RootRotationPhase::kAdd:
      report.gate = "every registered cluster stores the bundle with the new root";
      report.progress = BundleGate(records, BundleHolds(trust->pem, rotation.next_serial) ? trust->digest : kNoBundle);
      break;
    case RootRotationPhase::kSwitch:
      report.gate = absl::StrCat("every registered cluster holds a certificate under the new root (or ",
                                 absl::FormatDuration(options_.values.client_cert_ttl),
                                 ", one client lifetime, passes after the switch)");
      report.progress = SwitchGate(records, rotation.switched_at, options_.values.client_cert_ttl, now);
      break;
    case RootRotationPhase::kRetire:
      report.gate = "every registered cluster stores the bundle without the old root";
      report.progress = BundleGate(records, BundleHolds(trust->pem, rotation.previous_serial) ? kNoBundle : trust->digest);
      break;
    case RootRotationPhase::kDone:
      report.gate = "nothing: the rotation is over";
      report.progress = BundleGate({}, kNoBundle);
      break;
  }
  return report;
}

absl::StatusOr<std::string> Core::AdvanceRootRotation(RootRotation& rotation, absl::Time now) {
  const RootRotationPhase from = rotation.phase;
  rotation.phase = NextPhase(from);
  if (rotation.phase == RootRotationPhase::kDone) rotation.finished_at = now;
  RETURN_IF_ERROR(StoreRootRotation(rotation));
  RETURN_IF_ERROR(EnsureRootRotationPhase(rotation, now));
  LogInfo("root_rotation_advanced", {{"from", std::string(PhaseName(from))},
                                     {"to", std::string(PhaseName(rotation.phase))},
                                     {"next", rotation.next_serial}});
  switch (rotation.phase) {
    case RootRotationPhase::kSwitch:
      return absl::StrCat("switched to the new root ", rotation.next_serial,
                          ": the intermediate and the server certificate are under it, and every certificate "
                          "issued from now on");
    case RootRotationPhase::kRetire:
      return absl::StrCat("retiring the old root ", rotation.previous_serial,
                          ": agents are sent the bundle without it, and the server no longer accepts "
                          "certificates under it");
    default:
      return absl::StrCat("root rotation done: ", rotation.next_serial, " is the only root; ",
                          rotation.previous_serial, " is kept for audit in the root secret's ", kRetiredRootsKey);
  }
}

absl::StatusOr<std::pair<std::string, std::string>> Core::CheckStagedRoot(const StagedRoot& staged, absl::Time now) {
  auto invalid = [](absl::string_view what, const absl::Status& status) {
    return absl::InvalidArgumentError(absl::StrCat("the staged root: ", what, status.message()));
  };
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> certs = pki::ParseCertificateChainPem(staged.certificate_pem);
  if (!certs.ok()) return invalid("", certs.status());
  if (certs->size() != 1) return invalid("", absl::InvalidArgumentError("give exactly one certificate, the root"));
  X509* cert = (*certs)[0].get();
  absl::StatusOr<pki::UniquePtr<EVP_PKEY>> key = pki::ParsePrivateKeyPem(staged.key_pem);
  if (!key.ok()) return invalid("its key: ", key.status());
  if (absl::Status ca = pki::CheckCaCertificate(cert, now, "root certificate"); !ca.ok()) return invalid("", ca);
  if (!pki::IsIssuedBy(cert, cert)) return invalid("", absl::InvalidArgumentError("it is not self-signed"));
  if (absl::Status match = pki::CheckKeyMatchesCertificate(cert, key->get()); !match.ok()) {
    return invalid("its key: ", match);
  }
  ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(cert));
  if (info.not_after - now <= options_.intermediate_lifetime) {
    return invalid("", absl::InvalidArgumentError(absl::StrCat(
                           "it expires at ", pki::FormatUtc(info.not_after),
                           ", before an intermediate made now would (--intermediate_lifetime ",
                           absl::FormatDuration(options_.intermediate_lifetime), "): stage a longer-lived root")));
  }
  if (absl::StatusOr<std::vector<pki::UniquePtr<X509>>> held = pki::ParseCertificateChainPem(root_bundle_pem());
      held.ok()) {
    for (const auto& root : *held) {
      if (pki::SameSubjectAndKey(root.get(), cert)) {
        return invalid("", absl::InvalidArgumentError("it is a root already trusted: make a new one"));
      }
    }
  }
  ASSIGN_OR_RETURN(std::string cert_pem, pki::CertificateToPem(cert));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key->get()));
  return std::make_pair(cert_pem, key_pem);
}

absl::StatusOr<std::string> Core::RotateRoot(bool force, absl::Time now, const StagedRoot& staged_root) {
  absl::MutexLock lock(&root_rotation_mu_);
  absl::StatusOr<RootRotation> stored = StoredRootRotation();
  if (absl::IsNotFound(stored.status()) || (stored.ok() && stored->phase == RootRotationPhase::kDone)) {
    return StartRootRotation(now, staged_root);
  }
  if (!stored.ok()) return stored.status();
  if (!staged_root.certificate_pem.empty() || !staged_root.key_pem.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a root rotation is under way (phase ", PhaseName(stored->phase),
        "): a staged root starts the next one, once this one is done"));
  }
  RootRotation rotation = *stored;
  RETURN_IF_ERROR(EnsureRootRotationPhase(rotation, now));
  RootRotationReport report = Report(rotation, now);
  if (!report.progress.passed() && !force) {
    return absl::FailedPreconditionError(absl::StrCat(
        "phase ", PhaseName(rotation.phase), " waits until ", report.gate, ": ", report.progress.ready, " of ",
        report.progress.clusters, " are there (waiting for ", absl::StrJoin(report.progress.waiting, ", "),
        report.progress.clusters - report.progress.ready > static_cast<int>(report.progress.waiting.size()) ? ", ..." : "",
        "). It moves on by itself once they are; --force moves on without them (a cluster left behind "
        "re-registers with its token when its agent can)"));
  }
  return AdvanceRootRotation(rotation, now);
}

void Core::MaybeAdvanceRootRotation(absl::Time now) {
  if (!LeadsHousekeeping() || now < next_root_rotation_check_) return;
  next_root_rotation_check_ = now + absl::Seconds(1);
  absl::MutexLock lock(&root_rotation_mu_);
  absl::StatusOr<RootRotation> stored = StoredRootRotation();
  if (absl::IsNotFound(stored.status()) || (stored.ok() && stored->phase == RootRotationPhase::kDone)) return;
  absl::Status step = stored.status();
  if (step.ok()) {
    RootRotation rotation = *stored;
    step = EnsureRootRotationPhase(rotation, now);
    if (step.ok() && Report(rotation, now).progress.passed()) step = AdvanceRootRotation(rotation, now).status();
  }
  if (!step.ok() && now >= next_root_rotation_error_log_) {
    next_root_rotation_error_log_ = now + absl::Minutes(1);
    LogError("root_rotation_stalled", {{"error", std::string(step.message())}});
  }
}

void Core::RecallRootSwitch() {
  absl::StatusOr<RootRotation> stored = StoredRootRotation();
  if (!stored.ok() || stored->phase != RootRotationPhase::kSwitch || stored->switched_at == absl::InfinitePast()) return;
  absl::MutexLock lock(&switched_mu_);
  root_switched_at_ = stored->switched_at;
}

absl::StatusOr<Core::RootRotationReport> Core::ReportRootRotation(absl::Time now) {
  ASSIGN_OR_RETURN(RootRotation rotation, StoredRootRotation());
  return Report(rotation, now);
}

}  // namespace relay::mgmt
