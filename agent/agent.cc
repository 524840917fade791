#include "agent/agent.h"

#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/heartbeat.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/backoff.h"
#include "common/grpc_tls.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/names.h"
#include "common/ready_file.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "rotator/rotator.h"
#include "secrets/directory_store.h"
#include "tokens/identity_token.h"

namespace relay::agent {
namespace {

namespace v1 = ::relay::v1;
using enrolment::ClientCredentials;
using enrolment::ExplainRpcError;
using enrolment::HasToken;
using enrolment::IsCallFailure;
using enrolment::LoadClientCredentials;
using enrolment::LoadRootBundle;
using enrolment::RegisterWithToken;
using enrolment::SignLocally;
using enrolment::WorkloadSecrets;
using enrolment::WriteClientCredentials;

class AgentImpl final : public Agent {
 public:
  AgentImpl(AgentOptions options, std::unique_ptr<secrets::SecretStore> store)
      : options_(std::move(options)), clock_(*options_.clock), store_(std::move(store)) {}

  ~AgentImpl() override {
    Shutdown();
    if (loop_.joinable()) loop_.join();
    if (rotator_) rotator_->Stop();
  }

  absl::Status Init() {
    absl::StatusOr<ClientCredentials> credentials = ObtainCredentials(clock_.Now());
    if (credentials.ok()) {
      SetCredentials(std::make_shared<const ClientCredentials>(*std::move(credentials)));
    } else if (IsCallFailure(credentials.status())) {
      // The server is not there yet, or refuses for now: the loop keeps trying.
      LogWarning("registration_failed", {{"error", std::string(credentials.status().message())},
                                         {"next", "retrying with backoff"}});
    } else {
      return credentials.status();  // something this side must provide
    }
    if (absl::StatusOr<secrets::SecretData> state = store_->Get(options_.secrets.ns, enrolment::kAgentStateSecret);
        state.ok() && state->count(enrolment::kAckedVersionKey)) {
      acked_version_ = std::atoll(state->at(enrolment::kAckedVersionKey).c_str());
    }
    watch_ = store_->Watch(options_.secrets.ns, options_.secrets.values.client_tls_secret, [this] {
      ReloadCredentials();
      wakeup_.Notify();  // a loop waiting for a certificate looks again
    });
    if (!options_.metrics_address.empty()) {
      ASSIGN_OR_RETURN(metrics_http_, HttpEndpoints::Start(options_.metrics_address,
                                                           {[this] { return registry_.Render(); }, nullptr, nullptr}));
    }
    if (!options_.health_address.empty()) {
      ASSIGN_OR_RETURN(health_http_,
                       HttpEndpoints::Start(options_.health_address,
                                            {nullptr, [] { return std::string(); },
                                             [this] { return connected_ ? "" : "relay stream is not up"; }}));
    }
    if (options_.rotation == Rotation::kBuiltin) {
      rotator::RotatorOptions rotation;
      rotation.cluster = options_.cluster;
      rotation.secrets = options_.secrets;
      rotation.server = options_.server;
      rotation.grace_period_ratio = options_.grace_period_ratio;
      rotation.clock = &clock_;
      rotator_ = std::make_unique<rotator::Rotator>(rotation, store_.get(), &registry_);
      rotator_->Start();
    }
    loop_ = std::thread([this] { RelayLoop(); });
    return absl::OkStatus();
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (!stop_.HasBeenNotified()) stop_.Notify();
      if (context_) context_->TryCancel();
    }
    wakeup_.Notify();
  }

  void Wait() override { stop_.WaitForNotification(); }

 private:
  // DESIGN.md credential order.
  absl::StatusOr<ClientCredentials> ObtainCredentials(absl::Time now) {
    const WorkloadSecrets& secrets = options_.secrets;
    absl::StatusOr<ClientCredentials> existing =
        LoadClientCredentials(*store_, secrets, options_.cluster, now);
    if (existing.ok()) {
      LogInfo("credentials_loaded", {{"source", "client_secret"}, {"serial", existing->leaf.serial_hex}});
      return existing;
    }
    std::string client_problem(existing.status().message());
    if (!absl::IsNotFound(existing.status())) {
      LogWarning("client_secret_unusable", {{"error", client_problem}});
    }

    absl::StatusOr<ClientCredentials> local =
        SignLocally(*store_, secrets, options_.cluster, options_.local_cert_lifetime, now);
    if (local.ok()) {
      RETURN_IF_ERROR(WriteClientCredentials(*store_, secrets, *local));
      LogInfo("credentials_signed_locally", {{"serial", local->leaf.serial_hex}});
      return local;
    }
    if (!absl::IsNotFound(local.status())) return local.status();

    absl::StatusOr<std::string> root = LoadRootBundle(*store_, secrets);
    absl::StatusOr<std::string> token =
        tokens::LoadToken(*store_, secrets.TokenNamespace(), secrets.values.token_secret.name,
                          secrets.values.token_secret.key);
    if (root.ok() && token.ok()) {
      ASSIGN_OR_RETURN(ClientCredentials registered,
                       RegisterWithToken(*store_, secrets, options_.cluster, options_.server, now));
      RETURN_IF_ERROR(WriteClientCredentials(*store_, secrets, registered));
      LogInfo("credentials_registered", {{"serial", registered.leaf.serial_hex}});
      return registered;
    }
    std::string missing;
    absl::StrAppend(&missing, "\n  - ", secrets.ns, "/", secrets.values.client_tls_secret,
                    " (tls.crt, tls.key, ca.crt): ", client_problem);
    if (!root.ok()) {
      absl::StrAppend(&missing, "\n  - ", secrets.ns, "/", secrets.values.root_tls_secret,
                      " key ca.crt: ", root.status().message());
    }
    if (!token.ok()) {
      absl::StrAppend(&missing, "\n  - ", secrets.TokenNamespace(), "/",
                      secrets.values.token_secret.name, " key ", secrets.values.token_secret.key,
                      ": ", token.status().message());
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cluster ", options_.cluster, " has no way to get a client certificate. Missing:", missing,
        "\nProvide the root certificate and the identity token from the management cluster with\n"
        "  relayctl register --cluster ", options_.cluster,
        " --mgmt_secrets_dir=<server's secrets dir> --secrets_dir=<this agent's secrets dir>\n"
        "or put a client certificate in ", secrets.values.client_tls_secret, "."));
  }

  void SetCredentials(std::shared_ptr<const ClientCredentials> credentials) {
    metrics_.certificate_expiry.Set(absl::ToUnixSeconds(credentials->leaf.not_after));
    absl::MutexLock lock(&mu_);
    credentials_ = std::move(credentials);
  }

  std::shared_ptr<const ClientCredentials> Credentials() {
    absl::MutexLock lock(&mu_);
    return credentials_;
  }

  // The client secret changed (the rotator renewed it, or an operator replaced it): new
  // connections use it; the open stream keeps running. A secret that became unreadable
  // or vanished while this agent holds a valid certificate is written back from memory:
  // otherwise nobody would (the rotator can only register anew, which the server
  // refuses while this agent is connected).
  void ReloadCredentials() {
    absl::StatusOr<ClientCredentials> loaded =
        LoadClientCredentials(*store_, options_.secrets, options_.cluster, clock_.Now());
    std::shared_ptr<const ClientCredentials> current = Credentials();
    if (!loaded.ok()) {
      bool repairable = !absl::IsUnavailable(loaded.status());  // not just a writer in the way
      if (repairable && current && clock_.Now() < current->leaf.not_after) {
        absl::Status written = WriteClientCredentials(*store_, options_.secrets, *current);
        if (written.ok()) {
          LogWarning("client_secret_repaired", {{"problem", std::string(loaded.status().message())},
                                                {"serial", current->leaf.serial_hex},
                                                {"note", "wrote back the certificate this agent uses"}});
          return;
        }
        LogError("client_secret_repair_failed", {{"error", std::string(written.message())}});
      }
      LogWarning("client_secret_reload_skipped", {{"error", std::string(loaded.status().message())}});
      return;
    }
    if (current && current->leaf.serial_hex == loaded->leaf.serial_hex) return;
    LogInfo("client_secret_reloaded", {{"serial", loaded->leaf.serial_hex},
                                       {"not_after", pki::FormatUtc(loaded->leaf.not_after)}});
    metrics_.credential_reloads.Increment();
    SetCredentials(std::make_shared<const ClientCredentials>(*std::move(loaded)));
  }

  void ClearCredentials() {
    absl::MutexLock lock(&mu_);
    credentials_.reset();
  }

  // Registers anew with the token: first contact, or again after the server stopped
  // accepting our certificate (an operator admitted the cluster again).
  absl::Status RegisterAgain(absl::string_view why) {
    if (!HasToken(*store_, options_.secrets)) {
      return absl::FailedPreconditionError(absl::StrCat(
          why, ", and there is no identity token to register again: run relayctl register --cluster ",
          options_.cluster));
    }
    ASSIGN_OR_RETURN(ClientCredentials registered,
                     RegisterWithToken(*store_, options_.secrets, options_.cluster, options_.server, clock_.Now()));
    RETURN_IF_ERROR(WriteClientCredentials(*store_, options_.secrets, registered));
    LogInfo("credentials_registered", {{"serial", registered.leaf.serial_hex}, {"why", std::string(why)}});
    SetCredentials(std::make_shared<const ClientCredentials>(std::move(registered)));
    return absl::OkStatus();
  }

  absl::Duration Backoff(int attempt) {
    return FullJitterBackoff(attempt, options_.initial_backoff, options_.max_backoff,
                             std::uniform_real_distribution<double>(0, 1)(rng_));
  }

  // Sleeps for `wait` on the injected clock, or less when Shutdown() or a changed client
  // secret wakes it. False once shutting down.
  bool Pause(absl::Duration wait) {
    if (wait > absl::ZeroDuration()) clock_.SleepUntil(clock_.Now() + wait, wakeup_);
    return !stop_.HasBeenNotified();
  }

  void RelayLoop() {
    int attempt = 0;
    bool first = true;
    bool expired_logged = false;
    while (!stop_.HasBeenNotified()) {
      std::shared_ptr<const ClientCredentials> credentials = Credentials();
      if (!credentials) {
        // No certificate yet (the server was not there, or refused): try again.
        absl::StatusOr<ClientCredentials> obtained = ObtainCredentials(clock_.Now());
        if (obtained.ok()) {
          SetCredentials(std::make_shared<const ClientCredentials>(*std::move(obtained)));
          attempt = 0;
          continue;
        }
        absl::Duration wait = Backoff(attempt++);
        LogWarning("registration_failed", {{"error", std::string(obtained.status().message())},
                                           {"retry_in", absl::FormatDuration(wait)}});
        if (!Pause(wait)) break;
        continue;
      }
      absl::Time now = clock_.Now();
      if (now > credentials->leaf.not_after) {
        absl::StatusOr<ClientCredentials> stored =
            LoadClientCredentials(*store_, options_.secrets, options_.cluster, now);
        if (absl::IsNotFound(stored.status())) {
          // No client secret at all any more: first contact is the agent's again.
          ClearCredentials();
          continue;
        }
        if (stored.ok() && stored->leaf.serial_hex != credentials->leaf.serial_hex) {
          SetCredentials(std::make_shared<const ClientCredentials>(*std::move(stored)));
          continue;
        }
        // Renewing, and registering again once expired, is the rotator's job (the sidecar
        // or --rotation=builtin); one writer of the secret avoids two racing. Wait for
        // the watch to bring a new certificate (or, when a writer was in the way, look
        // again in a second).
        if (!expired_logged) {
          LogError("client_certificate_expired",
                   {{"not_after", pki::FormatUtc(credentials->leaf.not_after)},
                    {"help", options_.rotation == Rotation::kBuiltin
                                 ? "the built-in rotation could not renew it: see its renewal_failed events"
                                 : "nothing renewed it: run the rotator sidecar, or the agent with "
                                   "--rotation=builtin"}});
          expired_logged = true;
        }
        if (!Pause(absl::IsUnavailable(stored.status()) ? absl::Seconds(1) : absl::InfiniteDuration())) break;
        continue;
      }
      expired_logged = false;
      if (!first) metrics_.reconnects.Increment();
      first = false;
      absl::Time opened = clock_.Now();
      StreamOutcome outcome = RunStream(*credentials);
      connected_ = false;
      metrics_.connected.Set(0);
      if (stop_.HasBeenNotified()) break;
      if (outcome.switching) {
        // Our certificate is about to expire and a renewed one is ready: reconnect with
        // it now, before the server has to close the stream.
        LogInfo("relay_stream_switching", {{"to_serial", Credentials()->leaf.serial_hex}});
        attempt = 0;
        continue;
      }
      absl::Status explained = outcome.explained;
      LogWarning("relay_stream_ended", {{"code", absl::StrCat(outcome.status.error_code())},
                                        {"error", std::string(explained.message())}});
      if (RefusalOf(explained) == kRefusalUnknownCertificate) {
        // The server no longer accepts this certificate (the cluster was admitted again,
        // or registered anew elsewhere): register again now rather than wait for expiry.
        absl::Status registered = RegisterAgain("the server no longer accepts this cluster's certificate");
        if (registered.ok()) {
          attempt = 0;
          continue;
        }
        LogWarning("registration_failed", {{"error", std::string(registered.message())}});
      }
      if (outcome.welcomed && clock_.Now() - opened > absl::Seconds(10)) attempt = 0;
      if (outcome.welcomed && outcome.status.error_code() == grpc::StatusCode::UNAUTHENTICATED) attempt = 0;
      absl::Duration wait = outcome.welcomed && attempt == 0 ? absl::ZeroDuration() : Backoff(attempt);
      attempt++;
      if (!Pause(wait)) break;
    }
  }

  struct StreamOutcome {
    grpc::Status status;
    absl::Status explained;  // status in an operator's words, with the server's refusal kind
    bool welcomed = false;
    bool switching = false;  // we ended it to move to a renewed certificate
  };

  // True when the stream's certificate expires within `margin` and a renewed one has
  // been loaded. The renewed one is newer because it was issued later, whatever its
  // expiry (a lowered clientCertTtl makes it expire sooner).
  bool ShouldSwitch(const ClientCredentials& stream_credentials, absl::Duration margin) {
    absl::Time now = clock_.Now();
    if (now + margin < stream_credentials.leaf.not_after) return false;
    std::shared_ptr<const ClientCredentials> current = Credentials();
    return current && current->leaf.serial_hex != stream_credentials.leaf.serial_hex &&
           current->leaf.not_after > now;
  }

  void RecordAck(absl::Time now) {
    absl::MutexLock lock(&heartbeat_mu_);
    if (last_ack_ != absl::InfinitePast()) {
      max_ack_gap_ = std::max(max_ack_gap_, now - last_ack_);
      metrics_.heartbeat_ack_max_gap.Set(absl::ToDoubleSeconds(max_ack_gap_));
    }
    last_ack_ = now;
  }

  StreamOutcome RunStream(const ClientCredentials& credentials) {
    StreamOutcome outcome;
    auto channel = grpc_tls::CreateChannel(
        options_.server.address,
        grpc_tls::MutualTlsCredentials(credentials.root_pem, credentials.key_pem, credentials.chain_pem),
        options_.server.authority);
    auto stub = v1::Relay::NewStub(channel);
    auto context = std::make_shared<grpc::ClientContext>();
    {
      absl::MutexLock lock(&mu_);
      if (stop_.HasBeenNotified()) {
        outcome.status = grpc::Status::CANCELLED;
        return outcome;
      }
      context_ = context;
    }
    std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>> stream =
        stub->Connect(context.get());
    absl::Mutex write_mu;
    bool writes_done = false;
    auto write = [&](const v1::AgentMessage& message) {
      absl::MutexLock lock(&write_mu);
      return !writes_done && stream->Write(message);
    };
    v1::AgentMessage hello;
    hello.mutable_hello()->set_cluster(options_.cluster);
    hello.mutable_hello()->set_version(options_.version);
    hello.mutable_hello()->set_cert_serial(credentials.leaf.serial_hex);
    hello.mutable_hello()->set_acked_version(acked_version_);
    if (absl::StatusOr<std::string> roots = LoadRootBundle(*store_, options_.secrets); roots.ok()) {
      hello.mutable_hello()->set_trust_bundle_digest(pki::Sha256Hex(*roots));
    }
    write(hello);

    std::unique_ptr<Heartbeat> heartbeat;
    v1::ServerMessage message;
    std::string close_reason;
    while (stream->Read(&message)) {
      if (message.has_welcome()) {
        outcome.welcomed = true;
        connected_ = true;
        metrics_.connected.Set(1);
        LogInfo("relay_connected", {{"cluster", options_.cluster},
                                    {"server", options_.server.address},
                                    {"serial", credentials.leaf.serial_hex}});
        WriteReadyFileOnce();
        absl::Duration interval =
            absl::Milliseconds(std::max<int64_t>(message.welcome().heartbeat_interval_ms(), 100));
        if (!heartbeat) {
          heartbeat = std::make_unique<Heartbeat>(
              clock_, interval,
              Heartbeat::Stream{write,
                                [&] {
                                  absl::MutexLock lock(&write_mu);
                                  writes_done = true;
                                  stream->WritesDone();
                                }},
              [&, interval] { return ShouldSwitch(credentials, interval * 3); }, metrics_.heartbeats_sent);
          heartbeat->Start();
        }
      } else if (message.has_snapshot()) {
        ApplySnapshot(message.snapshot(), write);
      } else if (message.has_trust_bundle()) {
        StoreTrustBundle(message.trust_bundle(), write);
      } else if (message.has_renew_now()) {
        RequestRenewal(message.renew_now(), credentials);
      } else if (message.has_heartbeat_ack()) {
        // The round trip is the network's: real time, as the heartbeat was stamped.
        absl::Duration rtt = WallNow() - absl::FromUnixNanos(message.heartbeat_ack().sent_unix_nanos());
        metrics_.heartbeat_rtt.Set(absl::ToDoubleSeconds(rtt));
        metrics_.heartbeat_acks.Increment();
        if (heartbeat) heartbeat->OnAck();
        RecordAck(clock_.Now());
      } else if (message.has_close()) {
        close_reason = message.close().reason();
        LogWarning("relay_closed_by_server", {{"reason", close_reason}});
      }
    }
    if (heartbeat) {
      heartbeat->Stop();
      if (heartbeat->unanswered() > 0) {
        metrics_.heartbeats_unanswered.Increment({}, static_cast<double>(heartbeat->unanswered()));
      }
      outcome.switching = heartbeat->switching();
    }
    outcome.status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      context_.reset();
    }
    outcome.switching = outcome.switching && outcome.status.ok();
    if (!close_reason.empty() && outcome.status.ok()) {
      outcome.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, close_reason);
    }
    outcome.explained = ExplainRpcError(outcome.status, options_.server, "relay stream", context.get());
    if (!close_reason.empty()) {
      // The server ended the stream and said why: that, not "cannot reach", is the story.
      absl::Status closed(outcome.explained.code(),
                          absl::StrCat("relay stream closed by the server: ", close_reason));
      std::string refusal = RefusalOf(outcome.explained);
      outcome.explained = refusal.empty() ? closed : WithRefusal(closed, refusal);
    }
    return outcome;
  }

  // The roots to trust from now on, from the server this stream verified: stored in
  // relay-root-tls-secret (ca.crt replaced, other keys kept; one atomic write) and
  // acknowledged. Refused (and reported) unless it is whole, all CA certificates valid
  // now, and shares a root with the bundle held now (or holds a root that a held one
  // cross-certified), so a server can add and retire roots one step at a time but never
  // swap the trust for an unrelated one.
  template <typename Write>
  void StoreTrustBundle(const v1::TrustBundle& bundle, Write& write) {
    absl::Status stored = [&]() -> absl::Status {
      if (pki::Sha256Hex(bundle.ca_pem()) != bundle.digest()) {
        return absl::InvalidArgumentError("its digest does not match its content");
      }
      ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> offered, pki::ParseCertificateChainPem(bundle.ca_pem()));
      for (const auto& root : offered) RETURN_IF_ERROR(pki::CheckCaCertificate(root.get(), clock_.Now(), "root"));
      const enrolment::WorkloadSecrets& workload = options_.secrets;
      ASSIGN_OR_RETURN(secrets::SecretData data, store_->Get(workload.ns, workload.values.root_tls_secret));
      ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> held, pki::ParseCertificateChainPem(data["ca.crt"]));
      bool shares = false;
      for (const auto& a : offered) {
        for (const auto& b : held) shares = shares || X509_cmp(a.get(), b.get()) == 0;
      }
      if (!shares) {
        // Offline through a root rotation: the new root is in, the old one out. Taken
        // only when a cross-certificate shows a held root vouching for an offered one.
        absl::StatusOr<std::vector<pki::UniquePtr<X509>>> cross =
            pki::ParseCertificateChainPem(bundle.cross_certificates_pem());
        for (size_t i = 0; cross.ok() && !shares && i < cross->size(); ++i) {
          const X509* voucher = (*cross)[i].get();
          if (!pki::VerifyChain(voucher, {}, pki::Borrow(held), clock_.Now()).ok()) continue;
          for (const auto& a : offered) shares = shares || pki::SameSubjectAndKey(a.get(), voucher);
        }
      }
      if (!shares) {
        return absl::PermissionDeniedError(
            "it shares no root with the bundle held now, and no cross-certificate from a held root vouches for one");
      }
      data["ca.crt"] = bundle.ca_pem();
      return store_->Put(workload.ns, workload.values.root_tls_secret, data);
    }();
    if (!stored.ok()) {
      LogError("trust_bundle_refused", {{"digest", bundle.digest().substr(0, 12)}, {"error", std::string(stored.message())}});
      v1::AgentMessage status;
      status.mutable_status()->set_message(absl::StrCat("trust bundle not stored: ", stored.message()));
      write(status);
      return;
    }
    LogInfo("trust_bundle_stored", {{"digest", bundle.digest().substr(0, 12)}});
    v1::AgentMessage ack;
    ack.mutable_trust_bundle_ack()->set_digest(bundle.digest());
    write(ack);
  }

  // Leaves the server's ask in relay-agent-state for whoever renews (the rotator, sidecar
  // or built in, watches it): the certificate this stream uses, by a moment drawn at
  // random within the window.
  void RequestRenewal(const v1::RenewNow& renew, const ClientCredentials& credentials) {
    const absl::Duration window = absl::Milliseconds(std::max<int64_t>(0, renew.within_ms()));
    const absl::Time at =
        clock_.Now() + window * std::uniform_real_distribution<double>(0, 1)(rng_);
    absl::Status saved = enrolment::UpdateAgentState(
        *store_, options_.secrets,
        {{enrolment::kRenewSerialKey, credentials.leaf.serial_hex},
         {enrolment::kRenewAtKey, absl::StrCat(absl::ToUnixSeconds(at))}});
    if (!saved.ok()) {
      LogWarning("renewal_request_not_saved", {{"error", std::string(saved.message())}});
      return;
    }
    LogInfo("renewal_requested", {{"reason", renew.reason()}, {"serial", credentials.leaf.serial_hex},
                                  {"at", pki::FormatUtc(at)}});
  }

  template <typename Write>
  void ApplySnapshot(const v1::Snapshot& snapshot, Write& write) {
    secrets::SecretData files;
    for (const v1::Resource& resource : snapshot.resources()) {
      files[resource.name()] = resource.content();
    }
    absl::Status written = secrets::WriteSecretDirectory(options_.output_dir, files);
    if (!written.ok()) {
      LogError("snapshot_not_written", {{"version", absl::StrCat(snapshot.version())},
                                        {"error", std::string(written.message())}});
      v1::AgentMessage status;
      status.mutable_status()->set_message(
          absl::StrCat("snapshot ", snapshot.version(), " not written: ", written.message()));
      write(status);
      return;
    }
    acked_version_ = snapshot.version();
    absl::Status saved = enrolment::UpdateAgentState(*store_, options_.secrets,
                                                     {{enrolment::kAckedVersionKey, absl::StrCat(snapshot.version())}});
    if (!saved.ok()) LogWarning("agent_state_not_saved", {{"error", std::string(saved.message())}});
    metrics_.snapshots_applied.Increment();
    LogInfo("snapshot_applied", {{"version", absl::StrCat(snapshot.version())},
                                 {"resources", absl::StrCat(files.size())},
                                 {"output_dir", options_.output_dir}});
    v1::AgentMessage ack;
    ack.mutable_ack()->set_snapshot_version(snapshot.version());
    write(ack);
  }

  // Written once, when the stream is first up.
  void WriteReadyFileOnce() {
    if (options_.ready_file.empty() || ready_written_) return;
    ready_written_ = true;
    absl::Status written = WriteReadyFile(
        options_.ready_file, {{"cluster", options_.cluster},
                              {"connected", "1"},
                              {"metrics_port", absl::StrCat(metrics_http_ ? metrics_http_->port() : 0)},
                              {"health_port", absl::StrCat(health_http_ ? health_http_->port() : 0)}});
    if (!written.ok()) LogError("ready_file_not_written", {{"error", std::string(written.message())}});
  }

  const AgentOptions options_;
  Clock& clock_;
  // Shutdown(), or a changed client secret: ends the loop's waits early.
  Wakeup wakeup_;
  std::unique_ptr<secrets::SecretStore> store_;
  Metrics registry_;
  struct AgentMetrics {
    explicit AgentMetrics(Metrics& registry)
        : connected(registry.AddGauge("relay_agent_connected", "1 while the relay stream is up.")),
          certificate_expiry(registry.AddGauge("relay_client_certificate_expiry_timestamp_seconds",
                                               "notAfter of the client certificate in use.")),
          reconnects(registry.AddCounter("relay_agent_reconnects_total", "Relay streams opened after the first.")),
          snapshots_applied(registry.AddCounter("relay_agent_snapshots_applied_total",
                                                "Snapshots written to the output directory.")),
          heartbeat_rtt(registry.AddGauge("relay_agent_heartbeat_rtt_seconds", "Round trip of the latest heartbeat.")),
          credential_reloads(registry.AddCounter("relay_agent_credential_reloads_total",
                                                 "Times a replaced client secret was picked up without a restart.")),
          heartbeats_sent(registry.AddCounter("relay_agent_heartbeats_sent_total", "Heartbeats sent on relay streams.")),
          heartbeat_acks(registry.AddCounter("relay_agent_heartbeat_acks_total", "Heartbeats the server answered.")),
          heartbeats_unanswered(registry.AddCounter("relay_agent_heartbeats_unanswered_total",
                                                    "Heartbeats whose stream ended before the server answered them.")),
          heartbeat_ack_max_gap(registry.AddGauge("relay_agent_heartbeat_ack_max_gap_seconds",
                                                  "Longest time between two heartbeat answers, across reconnects.")) {
      for (Counter* counter : {&reconnects, &heartbeats_sent, &heartbeat_acks, &heartbeats_unanswered}) counter->Touch();
    }
    Gauge& connected;
    Gauge& certificate_expiry;
    Counter& reconnects;
    Counter& snapshots_applied;
    Gauge& heartbeat_rtt;
    Counter& credential_reloads;
    Counter& heartbeats_sent;
    Counter& heartbeat_acks;
    Counter& heartbeats_unanswered;
    Gauge& heartbeat_ack_max_gap;
  };
  AgentMetrics metrics_{registry_};
  std::unique_ptr<secrets::SecretWatch> watch_;
  std::unique_ptr<HttpEndpoints> metrics_http_;
  std::unique_ptr<HttpEndpoints> health_http_;
  std::unique_ptr<rotator::Rotator> rotator_;
  std::thread loop_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::atomic<bool> connected_{false};
  std::atomic<int64_t> acked_version_{0};
  absl::Mutex heartbeat_mu_;
  absl::Time last_ack_ ABSL_GUARDED_BY(heartbeat_mu_) = absl::InfinitePast();
  absl::Duration max_ack_gap_ ABSL_GUARDED_BY(heartbeat_mu_);
  bool ready_written_ = false;
  absl::Notification stop_;

  absl::Mutex mu_;
  std::shared_ptr<const ClientCredentials> credentials_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

bool AbslParseFlag(absl::string_view text, Rotation* rotation, std::string* error) {
  if (text == "sidecar") {
    *rotation = Rotation::kSidecar;
  } else if (text == "builtin") {
    *rotation = Rotation::kBuiltin;
  } else {
    *error = "use sidecar (the rotator sidecar renews the certificate) or builtin (the agent does)";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(Rotation rotation) { return rotation == Rotation::kBuiltin ? "builtin" : "sidecar"; }

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(AgentOptions options) {
  RETURN_IF_ERROR(ValidateClusterName(options.cluster));
  if (options.server.address.empty()) {
    return absl::InvalidArgumentError(
        "no management server address: set --server_address or glooAgent.relay.serverAddress");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<secrets::SecretStore> store,
                   kube::OpenSecretStore(options.secrets_backend, options.secrets_dir, options.kubeconfig));
  auto agent = std::make_unique<AgentImpl>(std::move(options), std::move(store));
  RETURN_IF_ERROR(agent->Init());
  return agent;
}

}  // namespace relay::agent
