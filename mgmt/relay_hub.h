#ifndef RELAY_MGMT_RELAY_HUB_H_
#define RELAY_MGMT_RELAY_HUB_H_

// The relay: each cluster's mTLS stream (RelayStream, on gRPC's callback API), the hub
// that knows which stream is each cluster's, and the Relay service that opens them.

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/rate_limit.h"
#include "mgmt/caller_identity.h"
#include "mgmt/core.h"

namespace relay::mgmt {

class RelayHub;

class RelayStream : public grpc::ServerBidiReactor<relay::v1::AgentMessage, relay::v1::ServerMessage> {
 public:
  // What an agent's messages may write to the server's log (status, acks): beyond it,
  // lines are dropped and counted (relay_agent_log_lines_dropped_total).
  static constexpr double kAgentLogLinesPerSecond = 5;
  static constexpr double kAgentLogBurst = 20;
  // A clock difference worth a log line (the metric shows every one).
  static constexpr absl::Duration kReportedClockSkew = absl::Seconds(10);

  RelayStream(Core* core, RelayHub* hub, CallerIdentifier* identifier, grpc::CallbackServerContext* context);

  void Begin();
  void Send(relay::v1::ServerMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends Close with `reason`, then ends the call with `status`.
  void Close(const std::string& reason, grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t id() const { return id_; }
  const std::string& cluster() const { return identity_.cluster; }
  const std::string& serial() const { return identity_.serial; }
  absl::Time cert_not_after() const { return identity_.not_after; }
  absl::Time last_seen() const {
    absl::MutexLock lock(&mu_);
    return last_seen_;
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  void HandleHello(const relay::v1::Hello& hello);
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartNextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Core* const core_;
  RelayHub* const hub_;
  CallerIdentifier* const identifier_;
  grpc::CallbackServerContext* const context_;
  const uint64_t id_;
  CallerIdentity identity_;  // set before the first read
  relay::v1::AgentMessage incoming_;
  bool hello_done_ = false;  // only touched from read callbacks, which never overlap

  mutable absl::Mutex mu_;
  std::deque<relay::v1::ServerMessage> outgoing_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
  absl::Time last_seen_ ABSL_GUARDED_BY(mu_) = absl::Now();
  // Log lines this stream's messages may cause (OnReadDone's alone: one read at a time).
  // True when one more log line fits the budget; otherwise counts it as dropped.
  bool AllowLogLine();
  TokenBucket log_budget_{kAgentLogLinesPerSecond, kAgentLogBurst, absl::Now()};
  bool log_limited_ = false;  // the drop has been logged once
  // Compares a heartbeat's stamp with this server's clock: relay_agent_clock_skew_seconds,
  // and a log line the first time on this stream that it is large.
  void MeasureClockSkew(int64_t sent_unix_nanos);
  bool skew_logged_ = false;  // read callbacks only
};

class RelayHub {
 public:
  explicit RelayHub(Core* core) : core_(core) {}

  // The stream becomes the cluster's one stream; an older one is closed. (Streams are
  // closed under the hub lock: a stream's OnDone needs it to unregister, so the stream
  // cannot be deleted meanwhile.)
  void Add(RelayStream* stream);
  void Remove(RelayStream* stream);

  void CloseCluster(const std::string& cluster, const std::string& reason, grpc::Status status);
  // Sends the server's trust bundle on every stream (after it changed).
  void BroadcastTrustBundle();
  // Asks every stream's agent to renew its certificate within `window` (RenewNow).
  void BroadcastRenewNow(absl::Duration window, const std::string& reason);
  // Closes the cluster's stream unless it was opened with certificate `serial`.
  void CloseClusterUnlessSerial(const std::string& cluster, const std::string& serial, const std::string& reason,
                                grpc::Status status);

  // Sends `message` on the cluster's stream, if it has one (and, with `stream_id`, only
  // if that is still the one). Never blocks: the message is built beforehand.
  void Send(const std::string& cluster, relay::v1::ServerMessage message, uint64_t stream_id = 0);

  bool Connected(const std::string& cluster, std::string* serial) const;

  // Closes streams whose certificate expired or whose agent went silent.
  void Sweep(absl::Time now, absl::Duration silence_limit);

  // The cluster's latest snapshot as a message. Reads the state store: call it where
  // waiting is allowed (the work queue, the admin service).
  static absl::StatusOr<relay::v1::ServerMessage> SnapshotMessage(ClusterRegistry& registry,
                                                                 const std::string& cluster);

 private:
  Core* const core_;
  mutable absl::Mutex mu_;
  std::map<std::string, RelayStream*> streams_ ABSL_GUARDED_BY(mu_);
};

class RelayService final : public relay::v1::Relay::CallbackService {
 public:
  RelayService(Core* core, RelayHub* hub, CallerIdentifier* identifier)
      : core_(core), hub_(hub), identifier_(identifier) {}

  grpc::ServerBidiReactor<relay::v1::AgentMessage, relay::v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Core* const core_;
  RelayHub* const hub_;
  CallerIdentifier* const identifier_;
};

// absl::Status to grpc::Status, telling the caller the kind of a refusal in trailing
// metadata (common/refusal.h) when `context` is given.
grpc::Status ToGrpc(const absl::Status& status, grpc::ServerContextBase* context = nullptr);

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_RELAY_HUB_H_
