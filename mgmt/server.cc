#include "mgmt/server.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/sha.h>

#include <array>
#include <atomic>
#include <deque>
#include <fstream>
#include <map>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/grpc_tls.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/names.h"
#include "common/refusal.h"
#include "common/state_lock.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "mgmt/accept_guard.h"
#include "mgmt/cluster_registry.h"
#include "mgmt/management_pki.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "pki/rotation.h"
#include "secrets/directory_store.h"
#include "tokens/bootstrap_tokens.h"
#include "tokens/identity_token.h"

namespace relay::mgmt {
namespace {

namespace v1 = ::relay::v1;

constexpr size_t kMaxMessageBytes = 4 * 1024 * 1024;
constexpr size_t kMaxCsrBytes = 16 * 1024;

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// The same, telling the caller what kind of refusal it is (common/refusal.h), so the
// agent knows whether to wait for an operator or to register again.
grpc::Status ToGrpc(const absl::Status& status, grpc::ServerContextBase* context) {
  std::string refusal = RefusalOf(status);
  if (!refusal.empty()) context->AddTrailingMetadata(kRefusalMetadataKey, refusal);
  return ToGrpc(status);
}

// The verified identity of a caller's client certificate.
struct CallerIdentity {
  std::string cluster;
  std::string serial;
  absl::Time not_after;
  bool issued_by_us = false;
};

// State shared by the services.
class Core {
 public:
  Core(ServerOptions options, std::unique_ptr<secrets::DirectorySecretStore> store,
       ManagementPki pki, std::unique_ptr<ClusterRegistry> registry)
      : options_(std::move(options)),
        store_(std::move(store)),
        pki_(std::move(pki)),
        registry_(std::move(registry)),
        bootstrap_tokens_(store_.get(), options_.ns) {
    metrics_.Describe("relay_push_clients_connected", "gauge",
                      "1 while the cluster's agent holds a relay stream (agent to server).");
    metrics_.Describe("relay_pull_clients_connected", "gauge",
                      "1 while the cluster's agent holds a relay stream (server to agent).");
    metrics_.Describe("relay_certificates_issued_total", "counter",
                      "Client certificates issued, by kind (register, renew).");
    metrics_.Describe("relay_certificates_refused_total", "counter",
                      "Certificate requests refused, by reason.");
    metrics_.Describe("relay_certificate_expiry_timestamp_seconds", "gauge",
                      "notAfter of the root, intermediate and server certificates.");
    metrics_.Describe("relay_client_certificate_expiry_timestamp_seconds", "gauge",
                      "notAfter of the client certificate each cluster's agent connects with.");
    metrics_.Describe("relay_snapshot_version", "gauge", "Latest snapshot version pushed, by cluster.");
    metrics_.Describe("relay_snapshot_acked_version", "gauge",
                      "Latest snapshot version the agent acknowledged, by cluster.");
    metrics_.Describe("relay_connections_shed_total", "counter",
                      "Relay connections closed unserved because too few file descriptors were free.");
    metrics_.Set("relay_connections_shed_total", {}, 0);
    metrics_.Set("relay_reregistrations_total", {}, 0);
    metrics_.Describe("relay_reregistrations_total", "counter",
                      "Registers with the shared token that replaced a cluster's still valid "
                      "certificate (its agent was offline); the replaced certificates are revoked.");
    metrics_.Describe("relay_agent_version_skew_total", "counter",
                      "Agent connections whose version differs from the server's, by how "
                      "(major: refused; minor, patch; unknown: no readable version).");
    for (const ClusterRecord& record : registry_->List()) {
      if (record.deregistered) continue;
      metrics_.Set("relay_push_clients_connected", {{"cluster", record.name}}, 0);
      metrics_.Set("relay_pull_clients_connected", {{"cluster", record.name}}, 0);
      metrics_.Set("relay_client_certificate_expiry_timestamp_seconds", {{"cluster", record.name}},
                   absl::ToUnixSeconds(record.not_after));
    }
    UpdateCaMetrics();
  }

  void UpdateCaMetrics() {
    auto set = [this](const char* which, absl::Time when) {
      metrics_.Set("relay_certificate_expiry_timestamp_seconds", {{"certificate", which}},
                   absl::ToUnixSeconds(when));
    };
    if (auto roots = pki::ParseCertificateChainPem(pki_.root_bundle_pem); roots.ok()) {
      if (auto info = pki::InspectCertificate((*roots)[0].get()); info.ok()) set("root", info->not_after);
    }
    if (pki_.signer) {
      if (auto info = pki::InspectCertificate(pki_.signer->certificate()); info.ok()) {
        set("intermediate", info->not_after);
      }
    }
    absl::MutexLock lock(&server_cert_mu_);
    set("server", pki_.server_certificate.not_after);
  }

  // Checks the caller's client certificate: presented and verified, a client
  // certificate for exactly one DNS label, not deregistered, and (for certificates our
  // own CA issued) a serial we issued.
  absl::StatusOr<CallerIdentity> Identify(const grpc::ServerContextBase& context, absl::Time now) {
    grpc_tls::Peer peer = grpc_tls::PeerOf(context);
    if (!peer.authenticated || peer.certificate_pem.empty()) {
      return absl::UnauthenticatedError(
          "this call needs a client certificate (mTLS): register the agent first");
    }
    ASSIGN_OR_RETURN(CallerIdentity identity, CertificateIdentity(peer, now));
    if (now > identity.not_after) {
      return absl::UnauthenticatedError("the client certificate has expired: register again");
    }
    // Revocation and serial pinning are checked on every call, never cached.
    RETURN_IF_ERROR(registry_->CheckNotDeregistered(identity.cluster));
    if (identity.issued_by_us) {
      RETURN_IF_ERROR(registry_->CheckIssuedSerial(identity.cluster, identity.serial));
    }
    return identity;
  }

  // What a client certificate says, checked once per certificate. The TLS handshake
  // verified its chain to the root bundle (the relay port's client roots are the same
  // file as pki_.root_bundle_pem), so here it is only read, without decoding its key:
  // it must be a client certificate (extKeyUsage clientAuth) naming exactly one DNS
  // label. Cached by its PEM, since an agent presents the same certificate on every call
  // of a connection.
  absl::StatusOr<CallerIdentity> CertificateIdentity(const grpc_tls::Peer& peer, absl::Time now) {
    CertificateDigest digest;
    SHA256(reinterpret_cast<const uint8_t*>(peer.certificate_pem.data()), peer.certificate_pem.size(),
           digest.data());
    {
      absl::MutexLock lock(&identity_cache_mu_);
      auto it = identity_cache_.find(digest);
      if (it != identity_cache_.end()) return it->second;
    }
    absl::StatusOr<pki::LeafSummary> leaf = pki::SummarizeLeafPem(peer.certificate_pem);
    if (!leaf.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("client certificate refused: ", leaf.status().message()));
    }
    if (!leaf->client_auth) {
      return absl::PermissionDeniedError(
          "client certificate refused: it is not for client authentication (no extKeyUsage clientAuth)");
    }
    if (now < leaf->not_before) {
      return absl::PermissionDeniedError(absl::StrCat(
          "client certificate refused: it is not yet valid (from ", pki::FormatUtc(leaf->not_before), ", ",
          absl::ToInt64Seconds(leaf->not_before - now), " s after this server's clock): the clocks differ by "
          "about ", absl::ToInt64Seconds(leaf->not_before - now), " s; set both clocks right (NTP)"));
    }
    if (leaf->dns_names.size() != 1 || !IsDnsLabel(leaf->dns_names[0])) {
      return absl::PermissionDeniedError(
          "client certificate must carry exactly one DNS SAN, the cluster name");
    }
    CallerIdentity identity{leaf->dns_names[0], leaf->serial_hex, leaf->not_after, false};
    identity.issued_by_us = pki_.signer && pki::NamesIssuer(pki_.signer->certificate(), *leaf);
    absl::MutexLock lock(&identity_cache_mu_);
    if (identity_cache_.size() >= kIdentityCacheSize) identity_cache_.clear();
    identity_cache_.emplace(digest, identity);
    return identity;
  }

  // Agents send "relay-agent/<major>.<minor>.<patch>". Another major version speaks
  // another protocol: refused. Any other difference is counted.
  absl::Status CheckAgentVersion(const std::string& version) {
    int major = -1, minor = -1, patch = -1;
    absl::string_view text = version;
    bool readable = absl::ConsumePrefix(&text, "relay-agent/");
    std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
    readable = readable && parts.size() == 3 && absl::SimpleAtoi(parts[0], &major) &&
               absl::SimpleAtoi(parts[1], &minor) && absl::SimpleAtoi(parts[2], &patch);
    if (!readable) {
      metrics_.Add("relay_agent_version_skew_total", {{"how", "unknown"}});
      return absl::OkStatus();
    }
    if (major != kVersionMajor) {
      metrics_.Add("relay_agent_version_skew_total", {{"how", "major"}});
      return absl::FailedPreconditionError(absl::StrCat(
          "agent version ", text, " is not compatible with this management server (version ", kVersion,
          "): agents and server must share the major version; upgrade the agent to ", kVersionMajor, ".x"));
    }
    if (minor != kVersionMinor) {
      metrics_.Add("relay_agent_version_skew_total", {{"how", "minor"}});
    } else if (patch != kVersionPatch) {
      metrics_.Add("relay_agent_version_skew_total", {{"how", "patch"}});
    }
    return absl::OkStatus();
  }

  void Refused(absl::string_view reason) {
    metrics_.Add("relay_certificates_refused_total", {{"reason", std::string(reason)}});
  }

  void Issued(absl::string_view kind) {
    metrics_.Add("relay_certificates_issued_total", {{"kind", std::string(kind)}});
  }

  v1::CertificateResponse Response(const pki::Issuer::IssuedPem& issued) const {
    v1::CertificateResponse response;
    response.set_certificate_chain_pem(issued.certificate_pem);
    response.set_root_ca_pem(pki_.root_bundle_pem);
    response.set_serial(issued.serial_hex);
    response.set_not_after_unix(absl::ToUnixSeconds(issued.not_after));
    return response;
  }

  // Renews the server certificate once its grace ratio has passed (when we own a CA).
  // The relay port re-reads the secret's files, so no restart is needed.
  void MaybeRenewServerCertificate(absl::Time now) {
    if (!pki_.signer) return;
    pki::CertificateInfo current;
    {
      absl::MutexLock lock(&server_cert_mu_);
      current = pki_.server_certificate;
    }
    absl::StatusOr<absl::Time> due = pki::RenewAt(current, options_.server_cert_grace_ratio);
    if (!due.ok() || now < *due) return;
    absl::StatusOr<pki::CertificateInfo> renewed = WriteServerCertificate(
        *store_, PkiOptions(options_), *pki_.signer, pki_.root_bundle_pem, now);
    if (!renewed.ok()) {
      LogError("server_certificate_renewal_failed", {{"error", std::string(renewed.status().message())}});
      return;
    }
    LogInfo("server_certificate_renewed", {{"old_serial", current.serial_hex},
                                           {"serial", renewed->serial_hex}});
    absl::MutexLock lock(&server_cert_mu_);
    pki_.server_certificate = *renewed;
    metrics_.Set("relay_certificate_expiry_timestamp_seconds", {{"certificate", "server"}},
                 absl::ToUnixSeconds(renewed->not_after));
  }

  static ManagementPkiOptions PkiOptions(const ServerOptions& options) {
    ManagementPkiOptions pki_options;
    pki_options.ns = options.ns;
    pki_options.values = options.values;
    pki_options.authority = options.authority;
    pki_options.extra_dns_names = options.server_dns_names;
    pki_options.extra_ip_addresses = options.server_ip_addresses;
    pki_options.server_lifetime = options.server_cert_lifetime;
    return pki_options;
  }

  static constexpr size_t kIdentityCacheSize = 65536;

  const ServerOptions options_;
  std::unique_ptr<secrets::DirectorySecretStore> store_;
  ManagementPki pki_;
  absl::Mutex identity_cache_mu_;
  // Keyed by the SHA-256 of the certificate's PEM: 32 bytes instead of ~900 per agent.
  using CertificateDigest = std::array<uint8_t, SHA256_DIGEST_LENGTH>;
  absl::flat_hash_map<CertificateDigest, CallerIdentity> identity_cache_ ABSL_GUARDED_BY(identity_cache_mu_);
  std::unique_ptr<ClusterRegistry> registry_;
  tokens::BootstrapTokens bootstrap_tokens_;
  Metrics metrics_;
  absl::Mutex server_cert_mu_;
};

// ---------------------------------------------------------------------------
// Relay streams.

class RelayHub;

class RelayStream : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage> {
 public:
  RelayStream(Core* core, RelayHub* hub, grpc::CallbackServerContext* context)
      : core_(core), hub_(hub), context_(context) {}

  void Begin();
  void Send(v1::ServerMessage message) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends Close with `reason`, then ends the call with `status`.
  void Close(const std::string& reason, grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  void SendLatestSnapshot();

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
  void HandleHello(const v1::Hello& hello);
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartNextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Core* const core_;
  RelayHub* const hub_;
  grpc::CallbackServerContext* const context_;
  CallerIdentity identity_;
  v1::AgentMessage incoming_;
  bool hello_done_ = false;  // only touched from read callbacks, which never overlap

  mutable absl::Mutex mu_;
  std::deque<v1::ServerMessage> outgoing_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
  absl::Time last_seen_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

class RelayHub {
 public:
  explicit RelayHub(Core* core) : core_(core) {}

  // The stream becomes the cluster's one stream; an older one is closed. (Streams are
  // closed under the hub lock: a stream's OnDone needs it to unregister, so the stream
  // cannot be deleted meanwhile.)
  void Add(RelayStream* stream) {
    {
      absl::MutexLock lock(&mu_);
      RelayStream*& slot = streams_[stream->cluster()];
      if (slot != nullptr) {
        slot->Close("replaced by a newer connection from the same cluster",
                    grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer connection"));
      }
      slot = stream;
    }
    SetConnected(stream->cluster(), true);
    // The certificate in use, which is what the expiry gauge shows (a renewal issued but
    // not yet used does not move it).
    core_->metrics_.Set("relay_client_certificate_expiry_timestamp_seconds", {{"cluster", stream->cluster()}},
                        absl::ToUnixSeconds(stream->cert_not_after()));
    LogInfo("agent_connected", {{"cluster", stream->cluster()}, {"serial", stream->serial()}});
  }

  void Remove(RelayStream* stream) {
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
      SetConnected(stream->cluster(), false);
      LogInfo("agent_disconnected", {{"cluster", stream->cluster()}});
    }
  }

  void CloseCluster(const std::string& cluster, const std::string& reason, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(cluster);
    if (it != streams_.end()) it->second->Close(reason, status);
  }

  // Closes the cluster's stream unless it was opened with certificate `serial`.
  void CloseClusterUnlessSerial(const std::string& cluster, const std::string& serial, const std::string& reason,
                                grpc::Status status) {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(cluster);
    if (it != streams_.end() && it->second->serial() != serial) it->second->Close(reason, status);
  }

  void SendSnapshot(const std::string& cluster) {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(cluster);
    if (it != streams_.end()) it->second->SendLatestSnapshot();
  }

  bool Connected(const std::string& cluster, std::string* serial) const {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(cluster);
    if (it == streams_.end()) return false;
    if (serial) *serial = it->second->serial();
    return true;
  }

  // Closes streams whose certificate expired or whose agent went silent.
  void Sweep(absl::Time now, absl::Duration silence_limit) {
    absl::MutexLock lock(&mu_);
    for (const auto& [cluster, stream] : streams_) {
      if (now > stream->cert_not_after()) {
        stream->Close("the client certificate this stream was opened with expired; reconnect with "
                      "the renewed one",
                      grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate expired"));
      } else if (now - stream->last_seen() > silence_limit) {
        stream->Close("no heartbeat from the agent",
                      grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no heartbeat"));
      }
    }
  }

 private:
  void SetConnected(const std::string& cluster, bool connected) {
    core_->metrics_.Set("relay_push_clients_connected", {{"cluster", cluster}}, connected ? 1 : 0);
    core_->metrics_.Set("relay_pull_clients_connected", {{"cluster", cluster}}, connected ? 1 : 0);
  }

  Core* const core_;
  mutable absl::Mutex mu_;
  std::map<std::string, RelayStream*> streams_ ABSL_GUARDED_BY(mu_);
};

void RelayStream::Begin() {
  absl::StatusOr<CallerIdentity> identity = core_->Identify(*context_, absl::Now());
  if (!identity.ok()) {
    LogWarning("relay_refused", {{"reason", std::string(identity.status().message())},
                                 {"peer", context_->peer()}});
    absl::MutexLock lock(&mu_);
    FinishLocked(ToGrpc(identity.status(), context_));
    return;
  }
  identity_ = *std::move(identity);
  StartRead(&incoming_);
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

void RelayStream::SendLatestSnapshot() {
  std::optional<ClusterRecord> record = core_->registry_->Find(identity_.cluster);
  if (!record) return;
  absl::StatusOr<std::vector<SnapshotResource>> resources =
      core_->registry_->LatestSnapshot(identity_.cluster);
  if (!resources.ok()) {
    LogError("snapshot_read_failed", {{"cluster", identity_.cluster},
                                      {"error", std::string(resources.status().message())}});
    return;
  }
  v1::ServerMessage message;
  v1::Snapshot* snapshot = message.mutable_snapshot();
  snapshot->set_version(record->snapshot_version);
  for (const SnapshotResource& resource : *resources) {
    v1::Resource* out = snapshot->add_resources();
    out->set_name(resource.name);
    out->set_content(resource.content);
  }
  Send(std::move(message));
}

void RelayStream::HandleHello(const v1::Hello& hello) {
  if (hello.cluster() != identity_.cluster) {
    LogWarning("relay_refused", {{"reason", "hello_identity_mismatch"},
                                 {"certificate_cluster", identity_.cluster},
                                 {"claimed_cluster", hello.cluster().substr(0, 64)}});
    Close(absl::StrCat("Hello names cluster \"", hello.cluster().substr(0, 64),
                       "\" but the client certificate is for \"", identity_.cluster, "\""),
          grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                       "Hello names another cluster than the client certificate"));
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
  welcome.mutable_welcome()->set_heartbeat_interval_ms(
      absl::ToInt64Milliseconds(core_->options_.heartbeat_interval));
  Send(std::move(welcome));
  std::optional<ClusterRecord> record = core_->registry_->Find(identity_.cluster);
  if (record && record->snapshot_version > hello.acked_version()) SendLatestSnapshot();
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
  } else if (incoming_.has_ack()) {
    int64_t version = incoming_.ack().snapshot_version();
    absl::Status recorded = core_->registry_->RecordAck(identity_.cluster, version);
    if (absl::IsInvalidArgument(recorded)) {
      LogWarning("ack_ignored", {{"cluster", identity_.cluster}, {"error", std::string(recorded.message())}});
    } else if (!recorded.ok()) {
      LogError("ack_not_recorded", {{"cluster", identity_.cluster},
                                    {"error", std::string(recorded.message())}});
    } else {
      std::optional<ClusterRecord> record = core_->registry_->Find(identity_.cluster);
      core_->metrics_.Set("relay_snapshot_acked_version", {{"cluster", identity_.cluster}},
                          record ? record->acked_version : version);
      LogInfo("snapshot_acked", {{"cluster", identity_.cluster}, {"version", absl::StrCat(version)}});
    }
  } else if (incoming_.has_status()) {
    LogInfo("agent_status", {{"cluster", identity_.cluster},
                             {"message", incoming_.status().message().substr(0, 256)}});
  }
  incoming_.Clear();
  absl::MutexLock lock(&mu_);
  if (!finished_ && !closing_) StartRead(&incoming_);
}

void RelayStream::OnDone() {
  if (!identity_.cluster.empty()) hub_->Remove(this);
  delete this;
}

class RelayService final : public v1::Relay::CallbackService {
 public:
  RelayService(Core* core, RelayHub* hub) : core_(core), hub_(hub) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* context) override {
    auto* stream = new RelayStream(core_, hub_, context);  // deletes itself in OnDone
    stream->Begin();
    return stream;
  }

 private:
  Core* const core_;
  RelayHub* const hub_;
};

// ---------------------------------------------------------------------------
// Registration.

// On gRPC's callback API: the CPU work (checks, CSR verify, signing) runs inline, and
// the call finishes from the registry journal's callback thread once the record is on
// disk, so no thread sits in fdatasync. (On the sync API the thread hand-offs and the
// blocked threads cost ~40% more server CPU per certificate: docs/BENCHMARKS.md.)
class RegistrationService final : public v1::Registration::CallbackService {
 public:
  RegistrationService(Core* core, RelayHub* hub) : core_(core), hub_(hub) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context, const v1::RegisterRequest* request,
                                     v1::CertificateResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::Time now = absl::Now();
    const std::string cluster = request->cluster();
    auto refuse = [this, reactor, context, cluster, peer = context->peer()](absl::string_view reason,
                                                                             const absl::Status& status) {
      core_->Refused(reason);
      LogWarning("register_refused", {{"cluster", cluster.substr(0, 64)},
                                      {"reason", std::string(reason)},
                                      {"peer", peer}});
      reactor->Finish(ToGrpc(status, context));
      return reactor;
    };
    auto reason_for = [](const absl::Status& status) -> absl::string_view {
      return status.code() == absl::StatusCode::kUnauthenticated    ? "bad_token"
             : status.code() == absl::StatusCode::kInvalidArgument ? "bad_csr"
             : status.code() == absl::StatusCode::kPermissionDenied ? "deregistered"
                                                                    : "other";
    };
    if (!core_->pki_.signer) {
      return refuse("ca_disabled",
                    absl::FailedPreconditionError(
                        "this server signs no certificates (glooMgmtServer.relay.disableCa): give "
                        "the agent its own client certificate in relay-client-tls-secret"));
    }
    std::string token;
    auto header = context->client_metadata().find("authorization");
    if (header != context->client_metadata().end()) {
      absl::string_view value(header->second.data(), header->second.size());
      if (!absl::StartsWith(value, "Bearer ")) {
        return refuse("bad_token", absl::UnauthenticatedError(
                                       "the authorization header is not 'Bearer <token>': send the identity "
                                       "token from relay-identity-token-secret as 'authorization: Bearer <token>'"));
      }
      if (value.size() > 7 + tokens::kMaxTokenBytes) {
        return refuse("bad_token", absl::UnauthenticatedError(absl::StrCat(
                                       "the identity token is longer than ", tokens::kMaxTokenBytes,
                                       " bytes, so it cannot be a relay token: check that the agent's "
                                       "relay-identity-token-secret holds the token (relayctl register)")));
      }
      token = std::string(value.substr(7));
    }
    if (token.empty()) {
      return refuse("missing_token",
                    absl::UnauthenticatedError(
                        "no identity token: send it as 'authorization: Bearer <token>' (the agent "
                        "reads it from relay-identity-token-secret)"));
    }
    if (absl::Status name = ValidateClusterName(cluster); !name.ok()) {
      return refuse("bad_cluster_name", name);
    }
    if (request->csr_pem().size() > kMaxCsrBytes) {
      return refuse("bad_csr", absl::InvalidArgumentError(absl::StrCat(
                                   "CSR is larger than ", kMaxCsrBytes, " bytes")));
    }
    if (absl::Status status = core_->registry_->CheckNotDeregistered(cluster); !status.ok()) {
      return refuse("deregistered", status);
    }
    auto issue = [&]() -> absl::StatusOr<pki::Issuer::IssuedPem> {
      return core_->pki_.signer->IssueClientFromCsrPem(request->csr_pem(), cluster, now,
                                                        core_->options_.values.client_cert_ttl);
    };
    auto answer = [this, reactor, response, cluster](const pki::Issuer::IssuedPem& issued) {
      core_->Issued("register");
      LogInfo("cluster_registered", {{"cluster", cluster}, {"serial", issued.serial_hex}});
      *response = core_->Response(issued);
      reactor->Finish(grpc::Status::OK);
    };
    if (tokens::TokensEqual(token, core_->pki_.token)) {
      RegistrationRules rules;
      rules.live_stream = hub_->Connected(cluster, nullptr);
      rules.strict = core_->options_.strict_reregistration;
      // Checked before the CSR is verified and signed: refusing a live name costs no crypto.
      absl::StatusOr<RegistrationKind> kind = core_->registry_->CheckRegistration(cluster, now, rules);
      if (!kind.ok()) {
        return refuse(kind.status().code() == absl::StatusCode::kAlreadyExists ? "name_in_use" : "deregistered",
                      kind.status());
      }
      absl::StatusOr<pki::Issuer::IssuedPem> issued = issue();
      if (!issued.ok()) return refuse(reason_for(issued.status()), issued.status());
      // Copies first: the callback below takes `issued` over.
      const std::string serial = issued->serial_hex;
      const absl::Time not_after = issued->not_after;
      const bool replaces = *kind == RegistrationKind::kReplacesValid;
      core_->registry_->RecordRegisteredAsync(
          cluster, serial, not_after, now, rules,
          [this, refuse, answer, cluster, replaces, issued = *std::move(issued)](absl::Status recorded) {
            if (!recorded.ok()) {
              refuse(recorded.code() == absl::StatusCode::kPermissionDenied ? "deregistered"
                     : recorded.code() == absl::StatusCode::kAlreadyExists  ? "name_in_use"
                                                                            : "not_recorded",
                     recorded);
              return;
            }
            if (replaces) Reregistered(cluster, issued.serial_hex);
            answer(issued);
          });
      return reactor;
    }
    if (!absl::StartsWith(token, tokens::kBootstrapTokenPrefix)) {
      return refuse("bad_token", absl::UnauthenticatedError(
                                     "identity token is not valid: copy the current relay-identity-token-secret "
                                     "from the management cluster (relayctl register)"));
    }
    // A one-time bootstrap token: redeemed and recorded together, waiting for the disk
    // (rare: once per cluster that enrols this way).
    pki::Issuer::IssuedPem issued;
    RegistrationRules bound;
    bound.bound_token = true;
    bool replaces = false;
    absl::Status status = core_->bootstrap_tokens_.Redeem(token, cluster, now, [&]() -> absl::Status {
      ASSIGN_OR_RETURN(RegistrationKind kind, core_->registry_->CheckRegistration(cluster, now, bound));
      replaces = kind == RegistrationKind::kReplacesValid;
      ASSIGN_OR_RETURN(issued, issue());
      return core_->registry_->RecordRegistered(cluster, issued.serial_hex, issued.not_after, now, bound);
    });
    if (!status.ok()) return refuse(reason_for(status), status);
    if (replaces) Reregistered(cluster, issued.serial_hex);
    answer(issued);
    return reactor;
  }

  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* context, const v1::RenewRequest* request,
                                  v1::CertificateResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::Time now = absl::Now();
    auto refuse = [this, reactor, context](absl::string_view reason, const std::string& cluster,
                                           const absl::Status& status) {
      core_->Refused(reason);
      LogWarning("renew_refused", {{"cluster", cluster}, {"reason", std::string(reason)},
                                   {"error", std::string(status.message())}});
      reactor->Finish(ToGrpc(status, context));
      return reactor;
    };
    if (!core_->pki_.signer) {
      return refuse("ca_disabled", "",
                    absl::FailedPreconditionError(
                        "this server signs no certificates (disableCa): renew the client "
                        "certificate with your own CA"));
    }
    absl::StatusOr<CallerIdentity> caller = core_->Identify(*context, now);
    if (!caller.ok()) {
      std::string refusal = RefusalOf(caller.status());
      return refuse(refusal == kRefusalDeregistered         ? "deregistered"
                    : refusal == kRefusalUnknownCertificate ? "unknown_certificate"
                                                            : "bad_client_certificate",
                    "", caller.status());
    }
    if (request->csr_pem().size() > kMaxCsrBytes) {
      return refuse("bad_csr", caller->cluster,
                    absl::InvalidArgumentError(absl::StrCat("CSR is larger than ", kMaxCsrBytes, " bytes")));
    }
    absl::StatusOr<pki::VerifiedCsr> csr = pki::ParseAndVerifyCsrPem(request->csr_pem());
    if (!csr.ok()) return refuse("bad_csr", caller->cluster, csr.status());
    if (csr->cluster != caller->cluster) {
      return refuse("identity_mismatch", caller->cluster,
                    absl::PermissionDeniedError(absl::StrCat(
                        "the CSR asks for cluster \"", csr->cluster,
                        "\" but the calling certificate is for \"", caller->cluster, "\"")));
    }
    absl::StatusOr<pki::Issuer::IssuedPem> issued =
        core_->pki_.signer->IssueClient(*csr, now, core_->options_.values.client_cert_ttl);
    if (!issued.ok()) return refuse("bad_csr", caller->cluster, issued.status());
    // Copies first: the callback below takes `caller` and `issued` over.
    const std::string cluster = caller->cluster;
    const std::string serial = issued->serial_hex;
    const absl::Time not_after = issued->not_after;
    core_->registry_->RecordIssuedAsync(
        cluster, serial, not_after, now,
        [this, refuse, reactor, response, caller = *std::move(caller),
         issued = *std::move(issued)](absl::Status recorded) {
          if (!recorded.ok()) {
            refuse("not_recorded", caller.cluster, recorded);
            return;
          }
          core_->Issued("renew");
          LogInfo("certificate_renewed", {{"cluster", caller.cluster},
                                          {"old_serial", caller.serial},
                                          {"serial", issued.serial_hex}});
          *response = core_->Response(issued);
          reactor->Finish(grpc::Status::OK);
        });
    return reactor;
  }

 private:
  // A Register replaced a still valid certificate: its serials are refused from now on,
  // and a stream still open with one of them is closed.
  void Reregistered(const std::string& cluster, const std::string& serial) {
    core_->metrics_.Add("relay_reregistrations_total", {});
    LogWarning("cluster_reregistered", {{"cluster", cluster},
                                        {"serial", serial},
                                        {"note", "the previous certificates of the cluster are revoked"}});
    hub_->CloseClusterUnlessSerial(cluster, serial, "the cluster registered again: this certificate is revoked",
                                   grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "certificate revoked"));
  }

  Core* const core_;
  RelayHub* const hub_;
};

// ---------------------------------------------------------------------------
// Admin (Unix socket).

class AdminService final : public v1::Admin::Service {
 public:
  AdminService(Core* core, RelayHub* hub) : core_(core), hub_(hub) {}

  grpc::Status ListClusters(grpc::ServerContext*, const v1::ListClustersRequest*,
                            v1::ListClustersResponse* response) override {
    for (const ClusterRecord& record : core_->registry_->List()) {
      v1::ClusterInfo* info = response->add_clusters();
      info->set_name(record.name);
      info->set_registered(!record.current_serial.empty());
      info->set_deregistered(record.deregistered);
      info->set_serial(record.current_serial);
      info->set_cert_not_after_unix(absl::ToUnixSeconds(record.not_after));
      info->set_cert_issued_unix(absl::ToUnixSeconds(record.issued_at));
      info->set_snapshot_version(record.snapshot_version);
      info->set_acked_version(record.acked_version);
      std::string serial;
      info->set_connected(hub_->Connected(record.name, &serial));
      info->set_connected_serial(serial);
    }
    return grpc::Status::OK;
  }

  grpc::Status DeregisterCluster(grpc::ServerContext*, const v1::ClusterRequest* request,
                                 v1::AdminResponse* response) override {
    const std::string& cluster = request->cluster();
    if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
    if (absl::Status status = core_->registry_->Deregister(cluster); !status.ok()) return ToGrpc(status);
    hub_->CloseCluster(cluster, "cluster deregistered by an operator",
                       grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "cluster deregistered"));
    core_->metrics_.Remove("relay_push_clients_connected", {{"cluster", cluster}});
    core_->metrics_.Remove("relay_pull_clients_connected", {{"cluster", cluster}});
    LogInfo("cluster_deregistered", {{"cluster", cluster}});
    response->set_message(absl::StrCat("cluster ", cluster, " deregistered; its streams are closed"));
    return grpc::Status::OK;
  }

  grpc::Status AdmitCluster(grpc::ServerContext*, const v1::ClusterRequest* request,
                            v1::AdminResponse* response) override {
    const std::string& cluster = request->cluster();
    if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
    if (absl::Status status = core_->registry_->Admit(cluster); !status.ok()) return ToGrpc(status);
    LogInfo("cluster_admitted", {{"cluster", cluster}});
    response->set_message(absl::StrCat("cluster ", cluster, " may register (its next Register may replace a "
                                                          "certificate that is still valid)"));
    return grpc::Status::OK;
  }

  grpc::Status CreateBootstrapToken(grpc::ServerContext*, const v1::CreateBootstrapTokenRequest* request,
                                    v1::CreateBootstrapTokenResponse* response) override {
    absl::Time now = absl::Now();
    int uses = request->uses() > 0 ? request->uses() : 1;
    absl::StatusOr<std::string> token = core_->bootstrap_tokens_.Create(
        request->cluster(), absl::Seconds(request->ttl_seconds()), uses, now);
    if (!token.ok()) return ToGrpc(token.status());
    if (absl::Status admitted = core_->registry_->Admit(request->cluster()); !admitted.ok()) {
      return ToGrpc(admitted);
    }
    LogInfo("bootstrap_token_created", {{"cluster", request->cluster()},
                                        {"ttl_seconds", absl::StrCat(request->ttl_seconds())}});
    response->set_token(*token);
    response->set_expires_unix(absl::ToUnixSeconds(now + absl::Seconds(request->ttl_seconds())));
    return grpc::Status::OK;
  }

  grpc::Status PushSnapshot(grpc::ServerContext*, const v1::PushSnapshotRequest* request,
                            v1::PushSnapshotResponse* response) override {
    const std::string& cluster = request->cluster();
    if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
    std::vector<SnapshotResource> resources;
    for (const v1::Resource& resource : request->resources()) {
      resources.push_back({resource.name(), resource.content()});
    }
    absl::StatusOr<int64_t> version = core_->registry_->PushSnapshot(cluster, resources);
    if (!version.ok()) return ToGrpc(version.status());
    core_->metrics_.Set("relay_snapshot_version", {{"cluster", cluster}}, *version);
    LogInfo("snapshot_pushed", {{"cluster", cluster}, {"version", absl::StrCat(*version)},
                                {"resources", absl::StrCat(resources.size())}});
    hub_->SendSnapshot(cluster);
    response->set_version(*version);
    return grpc::Status::OK;
  }

 private:
  Core* const core_;
  RelayHub* const hub_;
};

// ---------------------------------------------------------------------------

class ServerImpl final : public ManagementServer {
 public:
  ServerImpl(std::unique_ptr<Core> core, std::unique_ptr<StateLock> lock)
      : lock_(std::move(lock)), core_(std::move(core)), hub_(core_.get()) {}

  ~ServerImpl() override {
    Shutdown();
    if (sweeper_.joinable()) sweeper_.join();
  }

  absl::Status Serve() {
    const ServerOptions& options = core_->options_;
    const std::string secret_root = absl::StrCat(options.secrets_dir, "/", options.ns, "/");
    const std::string server_dir = secret_root + options.values.tls_secret;
    const std::string root_dir = secret_root + options.values.root_tls_secret;

    RETURN_IF_ERROR(grpc_tls::IssueNoSessionTickets());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    relay_service_ = std::make_unique<RelayService>(core_.get(), &hub_);
    registration_service_ = std::make_unique<RegistrationService>(core_.get(), &hub_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options.grpc_address,
                             grpc_tls::RelayServerCredentials(server_dir + "/tls.key",
                                                              server_dir + "/tls.crt",
                                                              root_dir + "/ca.crt"),
                             &grpc_port_);
    builder.RegisterService(relay_service_.get());
    builder.RegisterService(registration_service_.get());
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.SetMaxSendMessageSize(kMaxMessageBytes);
    // TLS records of at most 4 KiB (gRPC's default is 16): every relay message but a
    // large push fits one, and each connection's protector buffer shrinks by 12 KiB.
    builder.AddChannelArgument(GRPC_ARG_TSI_MAX_FRAME_SIZE, 4096);
    // gRPC sets SO_REUSEPORT by default: a second server would then bind the same port
    // and take half of the connections. One server per port.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // A connection that has not finished its TLS handshake by then is closed (gRPC's
    // default is 120 s, which lets idle connections pile up).
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(options.handshake_timeout)));
    relay_server_ = builder.BuildAndStart();
    if (!relay_server_ || grpc_port_ == 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot serve the relay on ", options.grpc_address,
          ": is the port in use? choose another with --grpc_address"));
    }
    accept_guard::Protect(grpc_port_, ReservedDescriptors());

    admin_service_ = std::make_unique<AdminService>(core_.get(), &hub_);
    std::string socket = options.admin_socket;
    if (socket.size() >= 100) {
      return absl::InvalidArgumentError(absl::StrCat(
          "admin socket path ", socket, " is too long for a Unix socket: choose a shorter "
          "--admin_socket"));
    }
    RETURN_IF_ERROR(RemoveStaleSocket(socket));
    grpc::ServerBuilder admin_builder;
    admin_builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
    admin_builder.RegisterService(admin_service_.get());
    mode_t old_mask = umask(0177);  // the socket is born 0600
    admin_server_ = admin_builder.BuildAndStart();
    umask(old_mask);
    if (!admin_server_) {
      return absl::UnavailableError(absl::StrCat("cannot create the admin socket ", socket));
    }
    chmod(socket.c_str(), 0600);
    struct stat made;
    if (stat(socket.c_str(), &made) == 0) {
      admin_socket_id_ = {made.st_dev, made.st_ino};
    }

    Core* core = core_.get();
    if (!options.metrics_address.empty()) {
      ASSIGN_OR_RETURN(metrics_http_,
                       HttpEndpoints::Start(options.metrics_address,
                                            {[core] { return core->metrics_.Render(); }, nullptr, nullptr}));
    }
    if (!options.health_address.empty()) {
      ASSIGN_OR_RETURN(health_http_,
                       HttpEndpoints::Start(options.health_address,
                                            {nullptr, [] { return std::string(); }, [this] { return NotReady(); }}));
    }
    sweeper_ = std::thread([this] { SweepLoop(); });
    serving_ = true;

    const int metrics_port = metrics_http_ ? metrics_http_->port() : 0;
    const int health_port = health_http_ ? health_http_->port() : 0;
    LogInfo("serving", {{"relay", absl::StrCat(options.grpc_address.substr(0, options.grpc_address.rfind(':')), ":", grpc_port_)},
                        {"metrics_port", absl::StrCat(metrics_port)},
                        {"health_port", absl::StrCat(health_port)},
                        {"admin_socket", socket},
                        {"secrets_dir", options.secrets_dir}});
    if (!options.ready_file.empty()) {
      std::string temp = options.ready_file + ".tmp";
      std::ofstream(temp) << "grpc_port=" << grpc_port_ << "\nmetrics_port=" << metrics_port
                          << "\nhealth_port=" << health_port << "\n";
      std::rename(temp.c_str(), options.ready_file.c_str());
    }
    return absl::OkStatus();
  }

  int grpc_port() const override { return grpc_port_; }

  void Wait() override { stop_.WaitForNotification(); }

  void Shutdown() override {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    if (!stop_.HasBeenNotified()) stop_.Notify();
    serving_ = false;
    if (relay_server_) relay_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (admin_server_) admin_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    // Only the socket this server made: the path may have been taken over since.
    struct stat now_there;
    if (admin_socket_id_ && stat(core_->options_.admin_socket.c_str(), &now_there) == 0 &&
        std::make_pair(now_there.st_dev, now_there.st_ino) == *admin_socket_id_) {
      unlink(core_->options_.admin_socket.c_str());
    }
  }

 private:
  void SweepLoop() {
    while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      absl::Time now = absl::Now();
      hub_.Sweep(now, core_->options_.heartbeat_interval * 3);
      core_->metrics_.Set("relay_connections_shed_total", {},
                          static_cast<double>(accept_guard::ShedConnections()));
      core_->MaybeRenewServerCertificate(now);
    }
  }

  // Descriptors the relay port leaves for everything else (files, the admin socket,
  // health probes, gRPC's own): a relay connection that would eat into them is shed.
  static int ReservedDescriptors() {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur >= 1024 ? 128 : static_cast<int>(limit.rlim_cur / 4);
  }

  std::string NotReady() const {
    if (!serving_) return "starting";
    if (accept_guard::Overloaded()) {
      return "the relay port is out of file descriptors and sheds new connections (open streams go on)";
    }
    return "";
  }

  // A socket left by a server that died is removed; one that another process serves is
  // an error (two servers must not share an admin socket).
  static absl::Status RemoveStaleSocket(const std::string& path) {
    struct stat info;
    if (lstat(path.c_str(), &info) != 0) return absl::OkStatus();
    if (!S_ISSOCK(info.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "admin socket path ", path, " exists and is not a socket: remove it or choose another --admin_socket"));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("cannot create a socket: ", std::strerror(errno)));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    bool live = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    if (live) {
      return absl::FailedPreconditionError(absl::StrCat(
          "admin socket ", path, " is served by another process (another management server?): stop it, or "
          "choose another --admin_socket"));
    }
    unlink(path.c_str());
    return absl::OkStatus();
  }

  std::unique_ptr<StateLock> lock_;  // first: released last
  std::unique_ptr<Core> core_;
  RelayHub hub_;
  std::optional<std::pair<dev_t, ino_t>> admin_socket_id_;
  std::unique_ptr<RelayService> relay_service_;
  std::unique_ptr<RegistrationService> registration_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> relay_server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<HttpEndpoints> metrics_http_;
  std::unique_ptr<HttpEndpoints> health_http_;
  std::thread sweeper_;
  int grpc_port_ = 0;
  std::atomic<bool> serving_{false};
  absl::Notification stop_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ManagementServer>> ManagementServer::Start(ServerOptions options) {
  if (options.admin_socket.empty()) options.admin_socket = options.secrets_dir + "/admin.sock";
  // First, before anything is read or written: one server per store.
  ASSIGN_OR_RETURN(std::unique_ptr<StateLock> lock,
                   StateLock::Acquire(options.secrets_dir, "relay-mgmt-server",
                                      "Stop that server, or start this one with another --secrets_dir."));
  ASSIGN_OR_RETURN(std::unique_ptr<secrets::DirectorySecretStore> store,
                   secrets::DirectorySecretStore::Create(options.secrets_dir));
  absl::Time now = absl::Now();
  ASSIGN_OR_RETURN(ManagementPki pki,
                   EnsureManagementPki(*store, Core::PkiOptions(options), now));
  ASSIGN_OR_RETURN(std::unique_ptr<ClusterRegistry> registry,
                   ClusterRegistry::Load(store.get(), options.ns, RegistryJournalPath(options.secrets_dir, options.ns),
                                         absl::StrCat("relayctl registry repair --mgmt_secrets_dir=",
                                                      options.secrets_dir, " --namespace=", options.ns)));
  auto core = std::make_unique<Core>(std::move(options), std::move(store), std::move(pki),
                                     std::move(registry));
  auto server = std::make_unique<ServerImpl>(std::move(core), std::move(lock));
  RETURN_IF_ERROR(server->Serve());
  return server;
}

}  // namespace relay::mgmt
