#ifndef RELAY_MGMT_CLUSTER_REGISTRY_H_
#define RELAY_MGMT_CLUSTER_REGISTRY_H_

// What the server knows about each cluster, persisted so that it survives a restart:
// the records in a journal file (one checksummed line per change, group-committed,
// compacted to one line per cluster at start-up and when it grows), and each cluster's
// latest snapshot in the secret store as `relay-snapshot.<name>`. Updates of different
// clusters run in parallel; each cluster's are serialised by a lock of its own.
//
// A damaged journal (a record whose checksum or fields do not hold) stops Load with the
// file, byte offset and the repair command; it is never compacted away.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mgmt/journal.h"
#include "secrets/secret_store.h"

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

// The result of repairing a damaged journal.
struct JournalRepair {
  std::string damaged_copy;          // where the damaged file was kept
  std::vector<std::string> dropped;  // one line each: offset, cluster if readable, why
  size_t kept = 0;                   // records kept
};

struct SnapshotResource {
  std::string name;
  std::string content;
};

class ClusterRegistry {
 public:
  static constexpr size_t kMaxPendingSerials = 4;

  // `journal_path` holds the records (created when missing). DATA_LOSS, naming the file,
  // the byte offset and `repair_command`, when a record is damaged.
  static absl::StatusOr<std::unique_ptr<ClusterRegistry>> Load(secrets::SecretStore* store,
                                                               std::string ns,
                                                               const std::string& journal_path,
                                                               const std::string& repair_command = "");

  // Keeps the damaged journal aside (<path>.damaged-<unix seconds>) and writes one with
  // every record that is whole. The server must not run meanwhile.
  static absl::StatusOr<JournalRepair> RepairJournal(const std::string& journal_path, absl::Time now);

  // PERMISSION_DENIED for a deregistered cluster.
  absl::Status CheckNotDeregistered(const std::string& cluster) const;

  // OK (with the kind) when Register may issue `cluster` a certificate now; else
  // PERMISSION_DENIED (deregistered) or ALREADY_EXISTS (a valid certificate exists and
  // the rules keep it), saying how to replace it.
  absl::StatusOr<RegistrationKind> CheckRegistration(const std::string& cluster, absl::Time now,
                                                     const RegistrationRules& rules) const;

  // A certificate issued by Register: checked again against `rules` under the cluster's
  // lock, it replaces every serial issued before (they are refused from now on) and
  // uses up an operator's admit. `done` runs once it is durable (journal callback
  // thread), or at once when refused.
  void RecordRegisteredAsync(const std::string& cluster, const std::string& serial, absl::Time not_after,
                             absl::Time now, const RegistrationRules& rules, Journal::Done done);
  absl::Status RecordRegistered(const std::string& cluster, const std::string& serial, absl::Time not_after,
                                absl::Time now, const RegistrationRules& rules);

  // A certificate issued by Renew. It is accepted beside the current one
  // until it, or one issued after it, is first used; so a lost answer never strands an
  // agent, and two writers racing (agent and rotator) cannot lock each other out. At
  // most kMaxPendingSerials unused ones are kept.
  absl::Status RecordIssued(const std::string& cluster, const std::string& serial,
                            absl::Time not_after, absl::Time now);
  // The same without blocking: `done` runs once the record is durable (on the journal's
  // callback thread), or at once when the change is refused. The record is visible to
  // readers as soon as it is queued; nobody holds the certificate before `done`.
  void RecordIssuedAsync(const std::string& cluster, const std::string& serial, absl::Time not_after,
                         absl::Time now, Journal::Done done);

  // For certificates this server's CA issued: OK when `serial` is the current one or a
  // pending one (which then becomes current, retiring those issued before it).
  // PERMISSION_DENIED otherwise.
  absl::Status CheckIssuedSerial(const std::string& cluster, const std::string& serial);

  absl::Status Deregister(const std::string& cluster);
  // Lifts a deregistration, and lets the next Register replace a certificate that is
  // still valid (the operator's way to hand a live name to a new agent).
  absl::Status Admit(const std::string& cluster);

  // Stores the snapshot and returns its version.
  absl::StatusOr<int64_t> PushSnapshot(const std::string& cluster,
                                       const std::vector<SnapshotResource>& resources);
  absl::StatusOr<std::vector<SnapshotResource>> LatestSnapshot(const std::string& cluster) const;
  // Records that the agent holds snapshot `version`. INVALID_ARGUMENT for a version that
  // was never pushed; an older one than the last ack is ignored (OK).
  absl::Status RecordAck(const std::string& cluster, int64_t version);

  std::optional<ClusterRecord> Find(const std::string& cluster) const;
  std::vector<ClusterRecord> List() const;

 private:
  ClusterRegistry(secrets::SecretStore* store, std::string ns) : store_(store), ns_(std::move(ns)) {}
  absl::Status CompactLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(compaction_mu_);

  // Applies `change` to a copy of the cluster's record under the cluster's own lock,
  // persists it when `change` says so (sets *save), then publishes it.
  absl::Status Update(const std::string& cluster,
                      const std::function<absl::Status(ClusterRecord&, bool* save)>& change);
  absl::Status Save(const ClusterRecord& record);
  // Update's form for RecordIssuedAsync: queues the line instead of waiting for it.
  void UpdateAsync(const std::string& cluster,
                   const std::function<absl::Status(ClusterRecord&, bool* save)>& change, Journal::Done done);
  absl::Mutex* ClusterLock(const std::string& cluster);
  // A copy of the cluster's record, or a new one named `cluster`.
  ClusterRecord RecordOrNew(const std::string& cluster) const;
  void MaybeCompact();

  secrets::SecretStore* const store_;
  const std::string ns_;
  std::unique_ptr<Journal> journal_;
  // Held shared by each update (append + publish), exclusively by compaction, so a
  // compaction never drops a line whose record it did not see.
  absl::Mutex compaction_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, ClusterRecord> clusters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<absl::Mutex>> cluster_locks_ ABSL_GUARDED_BY(mu_);
};

// Where the registry journal of namespace `ns` lives in a server's state directory.
std::string RegistryJournalPath(const std::string& secrets_dir, const std::string& ns);

// Resource names are file names an agent writes: letters, digits, '-', '_', '.'.
absl::Status ValidateResourceName(const std::string& name);

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_CLUSTER_REGISTRY_H_
