#ifndef RELAY_MGMT_CLUSTER_REGISTRY_H_
#define RELAY_MGMT_CLUSTER_REGISTRY_H_

// What the server knows about each cluster: a record per cluster ("clusters/<name>"
// in the state store, state/state_store.h) with its serial pins and revocation, and
// each cluster's latest snapshot as the secret `relay-snapshot.<name>`. The registry
// keeps the records in memory for reads; every change is a compare-and-set against the
// revision it read, acknowledged once durable. Changes of one cluster run one after
// another, in the order they were asked for; different clusters' run in parallel.
//
// The *Async methods never block: their `done` runs on a store thread. The blocking
// forms are for threads that may wait (the admin service's, tests); never call them
// from a gRPC callback or from a `done`.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "state/state_store.h"

namespace relay::mgmt {

struct ClusterRecord {
  std::string name;
  bool deregistered = false;
  std::string current_serial;                // the newest certificate seen in use
  std::vector<std::string> pending_serials;  // issued since, oldest first, not yet used
  absl::Time not_after = absl::InfinitePast();
  absl::Time issued_at = absl::InfinitePast();  // of the latest certificate
  absl::Time registered_at = absl::InfinitePast();
  int64_t snapshot_version = 0;  // latest pushed
  int64_t acked_version = 0;     // latest the agent acknowledged
  // An operator admitted the cluster (relayctl register): the next Register with the
  // shared token may replace a certificate that is still valid.
  bool admitted = false;
  // Hex SHA-256 of the trust bundle the agent last stored (TrustBundleAck); empty when
  // none acked yet.
  std::string trust_bundle;

  // Holds a certificate that has not expired at `now` (the latest issued).
  bool HasValidCertificate(absl::Time now) const {
    return (!current_serial.empty() || !pending_serials.empty()) && now < not_after;
  }
};

// What decides whether Register may (re)issue a cluster's certificate (DESIGN.md "Who
// may register a name").
struct RegistrationRules {
  bool live_stream = false;  // the cluster holds a relay stream right now
  bool strict = false;       // refuse whenever a valid certificate exists
  bool bound_token = false;  // a bootstrap token bound to this cluster was redeemed
};

enum class RegistrationKind {
  kFirst,            // no certificate yet (or only expired ones)
  kReplacesValid,    // a re-registration: the valid certificates it replaces are revoked
};


struct SnapshotResource {
  std::string name;
  std::string content;
};

class ClusterRegistry {
 public:
  static constexpr size_t kMaxPendingSerials = 4;
  static constexpr char kKeyPrefix[] = "clusters/";

  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // Reads every cluster record. DATA_LOSS, saying where it lives, for a record that does
  // not decode (it is left as it is).
  static absl::StatusOr<std::unique_ptr<ClusterRegistry>> Load(state::StateStore* state, std::string ns);
  ~ClusterRegistry();

  // OK when `value` is a cluster record this registry can read (for the journal repair).
  static absl::Status ValidateRecord(absl::string_view key, absl::string_view value);

  // PERMISSION_DENIED for a deregistered cluster.
  absl::Status CheckNotDeregistered(const std::string& cluster) const;

  // OK (with the kind) when Register may issue `cluster` a certificate now; else
  // PERMISSION_DENIED (deregistered) or ALREADY_EXISTS (a valid certificate exists and
  // the rules keep it), saying how to replace it.
  absl::StatusOr<RegistrationKind> CheckRegistration(const std::string& cluster, absl::Time now,
                                                     const RegistrationRules& rules) const;

  // A certificate issued by Register: checked again against `rules` when it is
  // recorded, it replaces every serial issued before (they are refused from then on)
  // and uses up an operator's admit.
  void RecordRegisteredAsync(const std::string& cluster, const std::string& serial, absl::Time not_after,
                             absl::Time now, const RegistrationRules& rules, Done done);
  absl::Status RecordRegistered(const std::string& cluster, const std::string& serial, absl::Time not_after,
                                absl::Time now, const RegistrationRules& rules);

  // A certificate issued by Renew. It is accepted beside the current one until it, or
  // one issued after it, is first used; so a lost answer never strands an agent. At
  // most kMaxPendingSerials unused ones are kept.
  void RecordIssuedAsync(const std::string& cluster, const std::string& serial, absl::Time not_after,
                         absl::Time now, Done done);
  absl::Status RecordIssued(const std::string& cluster, const std::string& serial, absl::Time not_after,
                            absl::Time now);

  // For certificates this server's CA issued: OK when `serial` is the current one or a
  // pending one (which then becomes current, retiring those issued before it, and
  // `done` runs once that is durable). PERMISSION_DENIED otherwise. The common case,
  // the current serial, needs no write: `done` then runs at once, on the caller's thread.
  void CheckIssuedSerialAsync(const std::string& cluster, const std::string& serial, Done done);
  absl::Status CheckIssuedSerial(const std::string& cluster, const std::string& serial);

  absl::Status Deregister(const std::string& cluster);
  // Lifts a deregistration, and lets the next Register replace a certificate that is
  // still valid (the operator's way to hand a live name to a new agent).
  absl::Status Admit(const std::string& cluster);

  // Stores the snapshot and returns its version.
  absl::StatusOr<int64_t> PushSnapshot(const std::string& cluster, const std::vector<SnapshotResource>& resources);
  absl::StatusOr<std::vector<SnapshotResource>> LatestSnapshot(const std::string& cluster) const;

  // Records that the agent holds snapshot `version`. INVALID_ARGUMENT for a version that
  // was never pushed; an older one than the last ack is ignored (OK).
  void RecordAckAsync(const std::string& cluster, int64_t version, Done done);
  absl::Status RecordAck(const std::string& cluster, int64_t version);
  // The agent stored the trust bundle with this digest.
  void RecordTrustBundleAckAsync(const std::string& cluster, const std::string& digest, Done done);

  std::optional<ClusterRecord> Find(const std::string& cluster) const;
  std::vector<ClusterRecord> List() const;

  // Called when another writer of the store (another replica) changed a cluster's
  // record, once the registry holds the new one: `before` is what it held (only the
  // name for a cluster it did not know). Runs on the store's thread: it must not block.
  // This registry's own writes are not reported (also when their watch event comes
  // before their acknowledgement). Null clears it; clearing waits for a call under way.
  using ForeignChange = std::function<void(const ClusterRecord& before, const ClusterRecord& after)>;
  void SetForeignChangeListener(ForeignChange listener);

 private:
  // A change of one record: edits `record`, sets *save when it is to be written.
  using Change = std::function<absl::Status(ClusterRecord& record, bool* save)>;

  using Waiting = std::pair<Change, Done>;
  struct Entry {
    ClusterRecord record;
    int64_t revision = 0;  // 0: not in the store yet
    bool busy = false;     // a change is being written
    std::string writing;   // the value being written while busy
    std::deque<Waiting> waiting;
  };

  ClusterRegistry(state::StateStore* state, std::string ns) : state_(state), ns_(std::move(ns)) {}

  // Runs `change` after the cluster's earlier ones, writes the result, and calls `done`.
  void UpdateAsync(const std::string& cluster, Change change, Done done);
  absl::Status Update(const std::string& cluster, Change change);
  void Run(const std::string& cluster, Change change, Done done, int attempt);
  // The cluster's next waiting change; with none, the cluster is no longer busy.
  std::optional<Waiting> TakeNext(const std::string& cluster);
  void CheckIssuedSerialAsync(const std::string& cluster, const std::string& serial, Done done, bool refreshed);
  // Reads the cluster's record from the store and takes it when it is newer than ours
  // (and no change of ours is being written). True when it took it.
  bool RefreshFromStore(const std::string& cluster);
  // A change written by someone else (another replica): taken when newer.
  void OnStoreChange(const state::Change& change);

  state::StateStore* const state_;
  const std::string ns_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> clusters_ ABSL_GUARDED_BY(mu_);
  absl::Mutex listener_mu_;
  ForeignChange listener_ ABSL_GUARDED_BY(listener_mu_);
  std::unique_ptr<state::StateWatch> watch_;
};

// Resource names are file names an agent writes: letters, digits, '-', '_', '.'.
absl::Status ValidateResourceName(const std::string& name);

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_CLUSTER_REGISTRY_H_
