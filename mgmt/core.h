#ifndef RELAY_MGMT_CORE_H_
#define RELAY_MGMT_CORE_H_

// What the management server's services share: its options, its state (state store,
// cluster registry, bootstrap tokens), its CA, its metrics and a queue for blocking
// work. The services reach all of it through these methods.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/relay/v1/relay.pb.h"
#include "common/metrics.h"
#include "common/work_queue.h"
#include "mgmt/cluster_registry.h"
#include "mgmt/connection_directory.h"
#include "mgmt/management_pki.h"
#include "mgmt/root_rotation.h"
#include "mgmt/server.h"
#include "mgmt/server_metrics.h"
#include "mgmt/signing_authority.h"
#include "state/leader_election.h"
#include "state/state_store.h"
#include "tokens/bootstrap_tokens.h"

namespace relay::mgmt {

class Core {
 public:
  Core(ServerOptions options, std::unique_ptr<state::StateStore> state, ManagementPki pki,
       std::unique_ptr<ClusterRegistry> registry);
  ~Core();

  const ServerOptions& options() const { return options_; }
  // The signing CA; null with disableCa (the server then signs nothing). It changes
  // when the intermediate rotates: keep what this returns for one issuance.
  std::shared_ptr<const pki::Issuer> signer() const { return authority_.current(); }
  // The current and the retired intermediates (which leaves are ours).
  const SigningAuthority& authority() const { return authority_; }
  // The roots agents are to trust (relay-root-tls-secret ca.crt) and its hex SHA-256
  // (TrustBundle), read together; they follow the root secret while the server runs
  // (WatchRootBundle).
  struct TrustBundle {
    std::string pem;
    std::string digest;
    // During a root rotation: the new root cross-certified by the old one (root secret
    // cross.crt, unexpired), appended to every chain handed out and sent with the bundle.
    std::string cross_pem;
  };
  std::shared_ptr<const TrustBundle> trust_bundle() const;
  std::string root_bundle_pem() const { return trust_bundle()->pem; }
  std::string trust_bundle_digest() const { return trust_bundle()->digest; }
  // Runs (on a store thread) after the root bundle changed, e.g. to push it to every
  // stream; nullptr stops it, waiting for a call under way.
  void OnTrustBundleChange(std::function<void()> listener);
  // Runs (on the thread that installed it) once the intermediate changed to one under
  // another root: a root rotation's switch, here or on another replica; nullptr stops it.
  void OnRootSwitch(std::function<void()> listener);
  // When this process began issuing under a root other than the previous intermediate's
  // (InfinitePast before any switch): a cluster whose latest certificate is older is
  // asked to renew when it connects.
  absl::Time root_switched_at() const;
  // At start-up: a root rotation stored in its switch phase sets root_switched_at, so the
  // clusters that have not renewed since are asked when they connect to this process.
  void RecallRootSwitch();
  // Follows the root secret: a bundle whose roots are CA certificates valid now and still
  // include the intermediate's issuer replaces the one held; another is refused (logged).
  void WatchRootBundle();
  // Constant-time comparison with the shared identity token and, during a rotation's
  // overlap, with the previous one (by its hash).
  bool IsSharedToken(absl::string_view token) const;
  // relayctl token rotate: a new shared token in the token secret, the previous one
  // accepted until now + overlap (its hash kept in the state, "shared-token/previous").
  // When the overlap ends.
  absl::StatusOr<absl::Time> RotateSharedToken(absl::Duration overlap, absl::Time now);
  // Follows the token secret, so a rotation another replica made reaches this one.
  void WatchSharedToken();

  state::StateStore& state() { return *state_; }
  ClusterRegistry& registry() { return *registry_; }
  // Streams held by other replicas (with the state in etcd); null for a single server.
  ConnectionDirectory* connections() { return connections_.get(); }
  void AttachConnections(std::unique_ptr<ConnectionDirectory> connections) { connections_ = std::move(connections); }
  // Replicas elect one to run once-only work; a single server (no election) always runs it.
  void AttachElection(std::unique_ptr<state::LeaderElection> election) { election_ = std::move(election); }
  bool LeadsHousekeeping() const { return !election_ || election_->IsLeader(); }
  tokens::BootstrapTokens& bootstrap_tokens() { return bootstrap_tokens_; }
  ServerMetrics& metrics() { return metrics_; }
  std::string RenderMetrics() const { return metrics_registry_.Render(); }
  WorkQueue& work() { return work_; }

  // The answer to Register and Renew: the chain, the root bundle, serial and expiry.
  relay::v1::CertificateResponse Response(const pki::Issuer::IssuedPem& issued) const;

  // Agents send "relay-agent/<major>.<minor>.<patch>": another major version speaks
  // another protocol (FAILED_PRECONDITION, saying which to run); any skew is counted.
  absl::Status CheckAgentVersion(const std::string& version);

  // Renews the server certificate once its grace ratio has passed (when we own a CA).
  // The relay port re-reads the secret's files, so no restart is needed. Of several
  // replicas the elected one renews it; the others take what it stored.
  void MaybeRenewServerCertificate(absl::Time now);
  // Prepares a new intermediate under the root once the current one reaches its
  // rotation point (IntermediateRotationDue), issues under it from then on, keeps the
  // old one's certificate until it expires (retired.crt) and re-issues the server
  // certificate under the new one. Of several replicas the elected one does it; the
  // others take it from the signing secret (WatchSigningCa).
  void MaybeRotateIntermediate(absl::Time now);
  // The same now, whatever the schedule (relayctl ca rotate-intermediate): the new
  // intermediate's certificate info, or why it could not (no root key, no CA).
  absl::StatusOr<pki::CertificateInfo> RotateIntermediate(absl::Time now, absl::string_view why);
  // Warns in the log when a CA (root, intermediate) comes within 30, 7 and 1 days of
  // its expiry, once per certificate and step; looks at most once a minute.
  void WarnOfCaExpiry(absl::Time now);
  // An operator's intermediate (PEM; it must chain to the root and outlive two client
  // lifetimes), installed as a rotation installs a new one: with disableCaCertGeneration,
  // or a root whose key the server does not hold (relayctl ca stage).
  absl::StatusOr<pki::CertificateInfo> StageIntermediate(const std::string& certificate_pem,
                                                         const std::string& key_pem, absl::Time now);
  // Follows the signing secret, so a rotation another replica made reaches this one.
  void WatchSigningCa();

  // Root rotation (root_rotation.h; core_root_rotation.cc). Starts one when none is under
  // way; otherwise moves the current one to its next phase when its gate has passed, or
  // regardless with `force` (the clusters still waiting are named). What it did, in an
  // operator's words; FAILED_PRECONDITION saying what is awaited when the gate holds.
  // Starting one, `staged_root` (certificate and key PEM; both empty: the server makes
  // one) is the new root.
  struct StagedRoot {
    std::string certificate_pem;
    std::string key_pem;
  };
  absl::StatusOr<std::string> RotateRoot(bool force, absl::Time now, const StagedRoot& staged_root = {});
  // The elected replica's sweep: redoes what the current phase must have done (after a
  // crash) and moves on once its gate passes. Looks at most once a second.
  void MaybeAdvanceRootRotation(absl::Time now);
  struct RootRotationReport {
    RootRotation rotation;
    std::string gate;  // what the phase waits for
    GateProgress progress;
  };
  // The rotation as stored with its gate's progress; NOT_FOUND when none ever ran.
  absl::StatusOr<RootRotationReport> ReportRootRotation(absl::Time now);

  static ManagementPkiOptions PkiOptions(const ServerOptions& options);

 private:
  void SetCaMetrics();
  void AdoptStoredSigningCa();
  // The retired intermediates once the current one retires (PEM bundle, unexpired).
  std::string RetiredAfterRotation(absl::Time now) const;
  // Stores `made` in the signing secret, issues under it, re-issues the server certificate.
  absl::StatusOr<pki::CertificateInfo> InstallIntermediate(NewIntermediate made, absl::Time now, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rotation_mu_);
  void ReloadSharedToken();
  void ReloadRootBundle();
  // Calls the root-switch listener when `next` has another issuer than `previous`.
  void NoticeRootSwitch(const X509* previous, const X509* next);
  // Root rotation steps, under root_rotation_mu_.
  absl::StatusOr<RootRotation> StoredRootRotation();
  absl::StatusOr<std::string> StartRootRotation(absl::Time now, const StagedRoot& staged_root)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(root_rotation_mu_);
  absl::Status EnsureRootRotationPhase(RootRotation& rotation, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(root_rotation_mu_);
  absl::StatusOr<std::string> AdvanceRootRotation(RootRotation& rotation, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(root_rotation_mu_);
  absl::Status StoreRootRotation(RootRotation& rotation);
  // An operator's new root, checked (a self-signed CA valid now that outlives a new
  // intermediate, its key, not a root held already): certificate and key PEM.
  absl::StatusOr<std::pair<std::string, std::string>> CheckStagedRoot(const StagedRoot& staged, absl::Time now);
  RootRotationReport Report(const RootRotation& rotation, absl::Time now);
  // The server certificate in the store (which another replica may have renewed).
  absl::StatusOr<pki::CertificateInfo> StoredServerCertificate();

  const ServerOptions options_;
  std::unique_ptr<state::StateStore> state_;
  ManagementPki pki_;
  mutable absl::Mutex bundle_mu_;
  std::shared_ptr<const TrustBundle> trust_bundle_ ABSL_GUARDED_BY(bundle_mu_);
  absl::Mutex bundle_listener_mu_;  // held while the listener runs
  std::function<void()> bundle_listener_ ABSL_GUARDED_BY(bundle_listener_mu_);
  std::unique_ptr<secrets::SecretWatch> root_watch_;
  absl::Mutex switch_listener_mu_;  // held while the listener runs
  std::function<void()> switch_listener_ ABSL_GUARDED_BY(switch_listener_mu_);
  mutable absl::Mutex switched_mu_;
  absl::Time root_switched_at_ ABSL_GUARDED_BY(switched_mu_) = absl::InfinitePast();
  SigningAuthority authority_;
  absl::Mutex rotation_mu_;       // one intermediate rotation at a time
  absl::Mutex root_rotation_mu_;  // one root rotation step at a time (taken before rotation_mu_)
  absl::Time next_root_rotation_check_ = absl::InfinitePast();  // the sweeper's alone
  absl::Time next_root_rotation_error_log_ = absl::InfinitePast();  // the sweeper's alone
  std::unique_ptr<secrets::SecretWatch> signing_watch_;
  mutable absl::Mutex token_mu_;
  std::string shared_token_ ABSL_GUARDED_BY(token_mu_);
  std::string previous_token_hash_ ABSL_GUARDED_BY(token_mu_);
  absl::Time previous_token_until_ ABSL_GUARDED_BY(token_mu_) = absl::InfinitePast();
  std::unique_ptr<secrets::SecretWatch> token_watch_;
  absl::Time next_rotation_attempt_ = absl::InfinitePast();  // the sweeper's alone
  absl::Time next_expiry_check_ = absl::InfinitePast();      // the sweeper's alone
  std::map<std::string, int> expiry_warned_;                 // serial -> level; the sweeper's alone
  std::unique_ptr<ClusterRegistry> registry_;
  std::unique_ptr<ConnectionDirectory> connections_;  // goes before the registry and the state
  std::unique_ptr<state::LeaderElection> election_;   // goes first of the state's users
  tokens::BootstrapTokens bootstrap_tokens_;
  Metrics metrics_registry_;
  ServerMetrics metrics_{metrics_registry_};
  absl::Mutex server_cert_mu_;
  pki::CertificateInfo server_certificate_ ABSL_GUARDED_BY(server_cert_mu_);
  WorkQueue work_{2};  // last: its threads stop first, finishing what they run
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_CORE_H_
