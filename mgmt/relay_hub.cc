#include "mgmt/relay_hub.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/refusal.h"

namespace relay::mgmt {
namespace {

namespace v1 = ::relay::v1;

std::atomic<uint64_t> next_stream_id{1};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status, grpc::ServerContextBase* context) {
  if (status.ok()) return grpc::Status::OK;
  std::string refusal = RefusalOf(status);
  if (context != nullptr && !refusal.empty()) context->AddTrailingMetadata(kRefusalMetadataKey, refusal);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// ---------------------------------------------------------------------------
// RelayStream

RelayStream::RelayStream(Core* core, RelayHub* hub, CallerIdentifier* identifier,
                         grpc::CallbackServerContext* context)
    : core_(core), hub_(hub), identifier_(identifier), context_(context), id_(next_stream_id++) {}

void RelayStream::Begin() {
  // The answer comes at once for the current serial, or from a store thread once a
  // pending serial became current; either way this callback thread does not wait.
  identifier_->Identify(grpc_tls::PeerOf(*context_), absl::Now(), [this](absl::StatusOr<CallerIdentity> identity) {
    if (!identity.ok()) {
      LogWarning("relay_refused", {{"reason", std::string(identity.status().message())}, {"peer", context_->peer()}});
      absl::MutexLock lock(&mu_);
      FinishLocked(ToGrpc(identity.status(), context_));
      return;
    }
    identity_ = *std::move(identity);
    StartRead(&incoming_);
  });
}

void RelayStream::FinishLocked(grpc::Status status) {
  if (finished_) return;
  finished_ = true;
  Finish(std::move(status));
}

void RelayStream::StartNextWriteLocked() {
  if (writing_ || finished_) return;
  if (outgoing_.empty()) {
    if (closing_) FinishLocked(close_status_);
    return;
  }
  writing_ = true;
  StartWrite(&outgoing_.front());
}

void RelayStream::Send(v1::ServerMessage message) {
  absl::MutexLock lock(&mu_);
  if (finished_ || closing_) return;
  outgoing_.push_back(std::move(message));
  StartNextWriteLocked();
}

void RelayStream::Close(const std::string& reason, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  if (finished_ || closing_) return;
  closing_ = true;
  close_status_ = std::move(status);
  v1::ServerMessage message;
  message.mutable_close()->set_reason(reason);
  outgoing_.push_back(std::move(message));
  StartNextWriteLocked();
}

void RelayStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!outgoing_.empty()) outgoing_.pop_front();
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    return;
  }
  StartNextWriteLocked();
}

void RelayStream::HandleHello(const v1::Hello& hello) {
  if (hello.cluster() != identity_.cluster) {
    LogWarning("relay_refused", {{"reason", "hello_identity_mismatch"},
                                 {"certificate_cluster", identity_.cluster},
                                 {"claimed_cluster", hello.cluster().substr(0, 64)}});
    Close(absl::StrCat("Hello names cluster \"", hello.cluster().substr(0, 64),
                       "\" but the client certificate is for \"", identity_.cluster, "\""),
          grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "Hello names another cluster than the client certificate"));
    return;
  }
  if (absl::Status compatible = core_->CheckAgentVersion(hello.version()); !compatible.ok()) {
    LogWarning("relay_refused", {{"reason", "incompatible_version"},
                                 {"cluster", identity_.cluster},
                                 {"agent_version", hello.version().substr(0, 64)}});
    Close(std::string(compatible.message()), ToGrpc(compatible));
    return;
  }
  hello_done_ = true;
  hub_->Add(this);
  v1::ServerMessage welcome;
  welcome.mutable_welcome()->set_cluster(identity_.cluster);
  welcome.mutable_welcome()->set_heartbeat_interval_ms(absl::ToInt64Milliseconds(core_->options().heartbeat_interval));
  Send(std::move(welcome));
  std::shared_ptr<const Core::TrustBundle> trust = core_->trust_bundle();
  if (hello.trust_bundle_digest() == trust->digest) {
    // What the agent holds, as it says on its authenticated stream (a write only when
    // the record says otherwise).
    core_->registry().RecordTrustBundleAckAsync(identity_.cluster, hello.trust_bundle_digest(), [](absl::Status) {});
  } else {
    v1::ServerMessage bundle;
    bundle.mutable_trust_bundle()->set_ca_pem(trust->pem);
    bundle.mutable_trust_bundle()->set_digest(trust->digest);
    bundle.mutable_trust_bundle()->set_cross_certificates_pem(trust->cross_pem);
    Send(std::move(bundle));
  }
  std::optional<ClusterRecord> record = core_->registry().Find(identity_.cluster);
  if (const absl::Time switched = core_->root_switched_at();
      record && switched != absl::InfinitePast() && record->issued_at <= switched &&
      core_->options().renew_now_window > absl::ZeroDuration()) {
    // Offline at the root switch's broadcast: asked now.
    v1::ServerMessage renew;
    renew.mutable_renew_now()->set_within_ms(absl::ToInt64Milliseconds(core_->options().renew_now_window));
    renew.mutable_renew_now()->set_reason("root rotation: certificates are issued under a new root");
    Send(std::move(renew));
  }
  if (record && record->snapshot_version > hello.acked_version()) {
    // Reading the snapshot waits on the store: not on this callback thread.
    core_->work().Post([core = core_, hub = hub_, cluster = identity_.cluster, stream = id_] {
      absl::StatusOr<v1::ServerMessage> snapshot = RelayHub::SnapshotMessage(core->registry(), cluster);
      if (!snapshot.ok()) {
        LogError("snapshot_read_failed", {{"cluster", cluster}, {"error", std::string(snapshot.status().message())}});
        return;
      }
      hub->Send(cluster, *std::move(snapshot), stream);
    });
  }
}

void RelayStream::OnReadDone(bool ok) {
  if (!ok) {
    // The agent closed its side (or the call is over): finish once pending writes are
    // out, keeping the status of a Close already under way.
    absl::MutexLock lock(&mu_);
    if (!closing_) {
      closing_ = true;
      close_status_ = grpc::Status::OK;
    }
    StartNextWriteLocked();
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    last_seen_ = absl::Now();
    if (finished_ || closing_) return;
  }
  if (!hello_done_) {
    if (!incoming_.has_hello()) {
      Close("the first message must be Hello",
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Hello"));
      return;
    }
    HandleHello(incoming_.hello());
  } else if (incoming_.has_heartbeat()) {
    v1::ServerMessage ack;
    ack.mutable_heartbeat_ack()->set_sequence(incoming_.heartbeat().sequence());
    ack.mutable_heartbeat_ack()->set_sent_unix_nanos(incoming_.heartbeat().sent_unix_nanos());
    Send(std::move(ack));
    MeasureClockSkew(incoming_.heartbeat().sent_unix_nanos());
  } else if (incoming_.has_ack()) {
    // Recorded without waiting: the stream reads on at once.
    int64_t version = incoming_.ack().snapshot_version();
    const bool log = AllowLogLine();
    core_->registry().RecordAckAsync(
        identity_.cluster, version, [core = core_, cluster = identity_.cluster, version, log](absl::Status recorded) {
          if (absl::IsInvalidArgument(recorded)) {
            if (log) LogWarning("ack_ignored", {{"cluster", cluster}, {"error", std::string(recorded.message())}});
          } else if (!recorded.ok()) {
            LogError("ack_not_recorded", {{"cluster", cluster}, {"error", std::string(recorded.message())}});
          } else {
            std::optional<ClusterRecord> record = core->registry().Find(cluster);
            core->metrics().snapshot_acked_version.Set({cluster}, record ? record->acked_version : version);
            if (log) LogInfo("snapshot_acked", {{"cluster", cluster}, {"version", absl::StrCat(version)}});
          }
        });
  } else if (incoming_.has_trust_bundle_ack()) {
    const std::string digest = incoming_.trust_bundle_ack().digest();
    const bool log = AllowLogLine();
    // Only the bundle this server serves now is recorded: an ack of anything else says
    // nothing the root rotation gate can use, and an agent alternating two digests would
    // otherwise cost a registry write per message.
    if (const std::string serving = core_->trust_bundle_digest(); digest != serving) {
      core_->metrics().trust_bundle_acks_ignored.Increment();
      if (log) {
        LogWarning("trust_bundle_ack_ignored",
                   {{"cluster", identity_.cluster},
                    {"digest", digest.substr(0, 12)},
                    {"why", absl::StrCat("not the trust bundle this server serves (", serving.substr(0, 12), ")")}});
      }
    } else {
      core_->registry().RecordTrustBundleAckAsync(
          identity_.cluster, digest, [cluster = identity_.cluster, digest, log](absl::Status recorded) {
            if (!log) return;
            if (!recorded.ok()) {
              LogWarning("trust_bundle_ack_not_recorded", {{"cluster", cluster}, {"error", std::string(recorded.message())}});
            } else {
              LogInfo("trust_bundle_acked", {{"cluster", cluster}, {"digest", digest.substr(0, 12)}});
            }
          });
    }
  } else if (incoming_.has_status()) {
    if (AllowLogLine()) {
      LogInfo("agent_status", {{"cluster", identity_.cluster}, {"message", incoming_.status().message().substr(0, 256)}});
    }
  }
  incoming_.Clear();
  absl::MutexLock lock(&mu_);
  if (!finished_ && !closing_) StartRead(&incoming_);
}

bool RelayStream::AllowLogLine() {
  if (log_budget_.TryTake(absl::Now())) return true;
  core_->metrics().agent_log_lines_dropped.Increment({identity_.cluster});
  if (!log_limited_) {
    log_limited_ = true;
    LogWarning("agent_log_limited", {{"cluster", identity_.cluster},
                                     {"note", absl::StrCat("this stream's messages write at most ", kAgentLogLinesPerSecond,
                                                           " log lines a second (bursts of ", kAgentLogBurst,
                                                           "); the rest are counted in "
                                                           "relay_agent_log_lines_dropped_total")}});
  }
  return false;
}

void RelayStream::OnDone() {
  if (!identity_.cluster.empty()) hub_->Remove(this);
  delete this;
}

// ---------------------------------------------------------------------------
// RelayHub

void RelayHub::Add(RelayStream* stream) {
  {
    absl::MutexLock lock(&mu_);
    RelayStream*& slot = streams_[stream->cluster()];
    if (slot != nullptr) {
      slot->Close("replaced by a newer connection from the same cluster",
                  grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer connection"));
    }
    slot = stream;
  }
  core_->metrics().SetConnected(stream->cluster(), true);
  // The certificate in use, which is what the expiry gauge shows (a renewal issued but
  // not yet used does not move it).
  core_->metrics().client_certificate_expiry.Set({stream->cluster()}, absl::ToUnixSeconds(stream->cert_not_after()));
  LogInfo("agent_connected", {{"cluster", stream->cluster()}, {"serial", stream->serial()}});
  if (ConnectionDirectory* connections = core_->connections()) connections->Connected(stream->cluster(), stream->serial());
}

void RelayStream::MeasureClockSkew(int64_t sent_unix_nanos) {
  if (sent_unix_nanos <= 0) return;  // an agent that does not stamp its heartbeats
  // The agent's clock minus this one's, plus the one-way delay (milliseconds: noise
  // next to the minutes that matter).
  const absl::Duration skew = absl::FromUnixNanos(sent_unix_nanos) - absl::Now();
  core_->metrics().agent_clock_skew.Set({identity_.cluster}, absl::ToDoubleSeconds(skew));
  if (skew_logged_ || absl::AbsDuration(skew) < kReportedClockSkew) return;
  skew_logged_ = true;
  LogWarning("agent_clock_skew",
             {{"cluster", identity_.cluster},
              {"skew_seconds", absl::StrCat(absl::ToInt64Seconds(skew))},
              {"hint", absl::StrCat("the agent's clock is ", skew > absl::ZeroDuration() ? "ahead of" : "behind",
                                    " this server's; set both right (NTP): certificates are dated 5 minutes back, "
                                    "so a larger difference makes new ones look not yet valid")}});
}

void RelayHub::Remove(RelayStream* stream) {
  bool was_current = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(stream->cluster());
    if (it != streams_.end() && it->second == stream) {
      streams_.erase(it);
      was_current = true;
    }
  }
  if (was_current) {
    core_->metrics().SetConnected(stream->cluster(), false);
    core_->metrics().agent_clock_skew.Remove({stream->cluster()});
    LogInfo("agent_disconnected", {{"cluster", stream->cluster()}});
    if (ConnectionDirectory* connections = core_->connections()) connections->Disconnected(stream->cluster());
  }
}

void RelayHub::CloseCluster(const std::string& cluster, const std::string& reason, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cluster);
  if (it != streams_.end()) it->second->Close(reason, status);
}

void RelayHub::CloseClusterUnlessSerial(const std::string& cluster, const std::string& serial,
                                        const std::string& reason, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cluster);
  if (it != streams_.end() && it->second->serial() != serial) it->second->Close(reason, status);
}

void RelayHub::BroadcastTrustBundle() {
  std::shared_ptr<const Core::TrustBundle> trust = core_->trust_bundle();
  v1::ServerMessage bundle;
  bundle.mutable_trust_bundle()->set_ca_pem(trust->pem);
  bundle.mutable_trust_bundle()->set_digest(trust->digest);
  bundle.mutable_trust_bundle()->set_cross_certificates_pem(trust->cross_pem);
  absl::MutexLock lock(&mu_);
  for (const auto& [cluster, stream] : streams_) stream->Send(bundle);
  LogInfo("trust_bundle_pushed", {{"streams", absl::StrCat(streams_.size())}});
}

void RelayHub::BroadcastRenewNow(absl::Duration window, const std::string& reason) {
  v1::ServerMessage renew;
  renew.mutable_renew_now()->set_within_ms(absl::ToInt64Milliseconds(window));
  renew.mutable_renew_now()->set_reason(reason);
  absl::MutexLock lock(&mu_);
  for (const auto& [cluster, stream] : streams_) stream->Send(renew);
  LogInfo("renew_now_pushed", {{"streams", absl::StrCat(streams_.size())}, {"within", absl::FormatDuration(window)}});
}

void RelayHub::Send(const std::string& cluster, v1::ServerMessage message, uint64_t stream_id) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cluster);
  if (it == streams_.end() || (stream_id != 0 && it->second->id() != stream_id)) return;
  it->second->Send(std::move(message));
}

bool RelayHub::Connected(const std::string& cluster, std::string* serial) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cluster);
  if (it == streams_.end()) return false;
  if (serial) *serial = it->second->serial();
  return true;
}

void RelayHub::Sweep(absl::Time now, absl::Duration silence_limit) {
  absl::MutexLock lock(&mu_);
  for (const auto& [cluster, stream] : streams_) {
    if (now > stream->cert_not_after()) {
      stream->Close("the client certificate this stream was opened with expired; reconnect with the renewed one",
                    grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate expired"));
    } else if (now - stream->last_seen() > silence_limit) {
      stream->Close("no heartbeat from the agent", grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no heartbeat"));
    }
  }
}

absl::StatusOr<v1::ServerMessage> RelayHub::SnapshotMessage(ClusterRegistry& registry, const std::string& cluster) {
  std::optional<ClusterRecord> record = registry.Find(cluster);
  if (!record) return absl::NotFoundError(absl::StrCat("cluster \"", cluster, "\" has no record"));
  absl::StatusOr<std::vector<SnapshotResource>> resources = registry.LatestSnapshot(cluster);
  if (!resources.ok()) return resources.status();
  v1::ServerMessage message;
  v1::Snapshot* snapshot = message.mutable_snapshot();
  snapshot->set_version(record->snapshot_version);
  for (const SnapshotResource& resource : *resources) {
    v1::Resource* out = snapshot->add_resources();
    out->set_name(resource.name);
    out->set_content(resource.content);
  }
  return message;
}

// ---------------------------------------------------------------------------

grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* RelayService::Connect(
    grpc::CallbackServerContext* context) {
  auto* stream = new RelayStream(core_, hub_, identifier_, context);  // deletes itself in OnDone
  stream->Begin();
  return stream;
}

}  // namespace relay::mgmt
