#ifndef RELAY_MGMT_CONNECTION_DIRECTORY_H_
#define RELAY_MGMT_CONNECTION_DIRECTORY_H_

// Which replica holds each cluster's relay stream, for replicas sharing a store (etcd).
// Each replica records the streams it holds, `connections/<cluster>` = "<replica>\t
// <serial>", and renews its own liveness record, `replicas/<replica>` = the unix time
// until which it vouches for them (now + ttl, renewed every ttl/3). A stream counts as
// held only while its replica's record is fresh, so a replica that dies takes its
// clusters with it within the ttl, without anyone deleting anything. (A liveness record
// rather than an etcd lease keeps this on the state seam, which every backend has.)
//
// ListClusters on any replica shows every cluster's connection, and the rule that keeps
// the shared token from taking over a live cluster name sees streams on every replica.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/work_queue.h"
#include "state/state_store.h"

namespace relay::mgmt {

class ConnectionDirectory {
 public:
  static constexpr char kConnections[] = "connections/";
  static constexpr char kReplicas[] = "replicas/";

  // `replica` names this process (unique among the replicas).
  ConnectionDirectory(state::StateStore* store, std::string replica, absl::Duration ttl);
  ~ConnectionDirectory();

  const std::string& replica() const { return replica_; }

  // This replica now holds / no longer holds the cluster's stream. Written in order, in
  // the background: a failure (etcd away) is logged and the next change retries.
  void Connected(const std::string& cluster, const std::string& serial);
  void Disconnected(const std::string& cluster);

  struct Holder {
    std::string replica;
    std::string serial;
  };
  // The live replica other than this one that holds the cluster's stream, if any.
  std::optional<Holder> HeldElsewhere(const std::string& cluster) const;

  // Housekeeping, on one replica (the elected leader): deletes the liveness records of
  // replicas silent for `after` past their last promise, and the connection entries of
  // replicas that are not live (every restart is a new replica id, so without this
  // both would only grow). Each delete is a compare-and-set on the revision read, so an
  // entry rewritten meanwhile stays. Blocking; returns how many records went.
  int ForgetDeadReplicas(absl::Time now, absl::Duration after);

 private:
  void OnConnectionChange(const state::Change& change);
  void OnReplicaChange(const state::Change& change);
  // Blocking, on the queue: sets (or, with nullopt, deletes if ours) the cluster's entry.
  void Write(const std::string& cluster, std::optional<std::string> value);
  void Beat();

  state::StateStore* const store_;
  const std::string replica_;
  const absl::Duration ttl_;

  mutable absl::Mutex mu_;
  std::map<std::string, Holder> connections_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> replicas_ ABSL_GUARDED_BY(mu_);  // vouched until

  std::unique_ptr<state::StateWatch> connection_watch_;
  std::unique_ptr<state::StateWatch> replica_watch_;
  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread heartbeat_;
  WorkQueue writes_{1};  // last: runs what is queued before the rest goes
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_CONNECTION_DIRECTORY_H_
