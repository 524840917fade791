#include "mgmt/server.h"

#include <dlfcn.h>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_tls.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/ready_file.h"
#include "common/status_macros.h"
#include "common/unix_socket_path.h"
#include "grpcpp/version_info.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "mgmt/accept_guard.h"
#include "mgmt/admin_service.h"
#include "mgmt/caller_identity.h"
#include "mgmt/core.h"
#include "mgmt/registration_service.h"
#include "mgmt/relay_hub.h"
#include "mgmt/secret_mirror.h"
#include "state/etcd_state_store.h"
#include "state/local_state_store.h"

// Wiring: the state, the services, the ports. The services live in their own files
// (registration_service, relay_hub, admin_service, caller_identity), what they share in
// core.

namespace relay::mgmt {
namespace {

constexpr size_t kMaxMessageBytes = 4 * 1024 * 1024;
// How long a replica's streams count as held after it last vouched for them: a killed
// replica's clusters read disconnected on the others within this.
constexpr absl::Duration kReplicaLivenessTtl = absl::Seconds(15);
// How long a replica may stay silent before the leader forgets it and its streams.
constexpr absl::Duration kForgetReplicasAfter = absl::Minutes(2);
constexpr absl::Duration kForgetEvery = absl::Minutes(1);

using secrets::DirectorySecretStore;
constexpr auto KeyPath = &DirectorySecretStore::KeyPath;

// With the state in etcd: this replica's hold on its working directory, and the copies
// of the TLS secrets its relay port reads there.
struct ReplicaFiles {
  std::unique_ptr<StateLock> lock;
  std::unique_ptr<secrets::DirectorySecretStore> store;
  std::unique_ptr<SecretMirror> mirror;
};

// gRPC's reflection library registers its plugin for every server it sees built as soon
// as it is loaded (a static initializer), so it is linked in only when asked for.
absl::Status LoadReflection() {
  const std::string library = absl::StrCat("libgrpc++_reflection.so.", GRPC_CPP_VERSION_MAJOR, ".", GRPC_CPP_VERSION_MINOR);
  if (dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return absl::OkStatus();
  const char* why = dlerror();
  return absl::FailedPreconditionError(absl::StrCat("--grpc_reflection: cannot load ", library, " (",
                                                    why ? why : "unknown error",
                                                    "): install gRPC's C++ libraries, or leave reflection off"));
}

class ServerImpl final : public ManagementServer {
 public:
  ServerImpl(std::unique_ptr<Core> core, ReplicaFiles files)
      : core_(std::move(core)),
        files_(std::move(files)),
        hub_(core_.get()),
        identifier_(&core_->authority(), &core_->registry()) {}

  ~ServerImpl() override {
    core_->OnTrustBundleChange(nullptr);  // before the hub goes
    core_->OnRootSwitch(nullptr);
    core_->registry().SetForeignChangeListener(nullptr);
    {
      // Foreign pushes under way use the hub: they finish first.
      absl::MutexLock lock(&foreign_mu_);
      foreign_mu_.Await(absl::Condition(
          +[](int* pending) { return *pending == 0; }, &foreign_pushes_));
    }
    Shutdown();
    if (sweeper_.joinable()) sweeper_.join();
    // Housekeeping the sweeper posted touches this object: it finishes (within the
    // store's timeout) before the members go.
    while (forgetting_ || compacting_) absl::SleepFor(absl::Milliseconds(10));
  }

  absl::Status Serve() {
    const ServerOptions& options = core_->options();

    RETURN_IF_ERROR(grpc_tls::ApplyServerTlsPolicy());
    core_->registry().SetForeignChangeListener(
        [this](const ClusterRecord& before, const ClusterRecord& after) { OnForeignChange(before, after); });
    core_->OnTrustBundleChange([this] { hub_.BroadcastTrustBundle(); });
    core_->OnRootSwitch([this] {
      if (core_->options().renew_now_window <= absl::ZeroDuration()) return;
      hub_.BroadcastRenewNow(core_->options().renew_now_window,
                             "root rotation: certificates are issued under a new root");
    });
    core_->WatchRootBundle();
    core_->RecallRootSwitch();
    grpc::EnableDefaultHealthCheckService(true);
    if (options.grpc_reflection) RETURN_IF_ERROR(LoadReflection());
    relay_service_ = std::make_unique<RelayService>(core_.get(), &hub_, &identifier_);
    registration_service_ = std::make_unique<RegistrationService>(core_.get(), &hub_, &identifier_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options.grpc_address,
                             grpc_tls::RelayServerCredentials(
                                 KeyPath(options.secrets_dir, options.ns, options.values.tls_secret, "tls.key"),
                                 KeyPath(options.secrets_dir, options.ns, options.values.tls_secret, "tls.crt"),
                                 KeyPath(options.secrets_dir, options.ns, options.values.root_tls_secret, "ca.crt")),
                             &grpc_port_);
    builder.RegisterService(relay_service_.get());
    builder.RegisterService(registration_service_.get());
    builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
    builder.SetMaxSendMessageSize(kMaxMessageBytes);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(options.min_ping_interval)));
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
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
    accept_guard::SetMaxPendingHandshakes(options.max_pending_handshakes);

    admin_service_ = std::make_unique<AdminService>(core_.get(), &hub_);
    std::string socket = options.admin_socket;
    // A path longer than a Unix socket takes (a deep secrets_dir) is reached through
    // its directory; the file is still at `socket` for relayctl.
    ASSIGN_OR_RETURN(UnixSocketPath admin_path, UnixSocketPath::For(socket));
    admin_socket_path_ = std::move(admin_path);
    RETURN_IF_ERROR(RemoveStaleSocket(*admin_socket_path_));
    grpc::ServerBuilder admin_builder;
    admin_builder.AddListeningPort("unix:" + admin_socket_path_->usable(), grpc::InsecureServerCredentials());
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
                                            {[core] { return core->RenderMetrics(); }, nullptr, nullptr}));
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
    return WriteReadyFile(options.ready_file, {{"grpc_port", absl::StrCat(grpc_port_)},
                                               {"metrics_port", absl::StrCat(metrics_port)},
                                               {"health_port", absl::StrCat(health_port)}});
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
    if (admin_socket_id_ && stat(core_->options().admin_socket.c_str(), &now_there) == 0 &&
        std::make_pair(now_there.st_dev, now_there.st_ino) == *admin_socket_id_) {
      unlink(core_->options().admin_socket.c_str());
    }
  }

 private:
  // What another replica did to a cluster reaches the cluster's stream here, wherever
  // the agent is connected.
  void OnForeignChange(const ClusterRecord& before, const ClusterRecord& after) {
    const std::string& cluster = after.name;
    if (after.deregistered && !before.deregistered) {
      hub_.CloseCluster(cluster, "cluster deregistered by an operator",
                        grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "cluster deregistered"));
      core_->metrics().ForgetCluster(cluster);
      LogInfo("cluster_deregistered", {{"cluster", cluster}, {"by", "another replica"}});
      return;
    }
    if (after.registered_at > before.registered_at && !before.current_serial.empty()) {
      hub_.CloseClusterUnlessSerial(cluster, after.current_serial,
                                    "the cluster registered again: this certificate is revoked",
                                    grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "certificate revoked"));
    }
    if (after.snapshot_version > before.snapshot_version && hub_.Connected(cluster, nullptr)) {
      // Reading the snapshot waits on the store: not on its thread.
      {
        absl::MutexLock lock(&foreign_mu_);
        foreign_pushes_++;
      }
      core_->work().Post([this, cluster] {
        absl::StatusOr<relay::v1::ServerMessage> snapshot = RelayHub::SnapshotMessage(core_->registry(), cluster);
        if (snapshot.ok()) hub_.Send(cluster, *std::move(snapshot));
        absl::MutexLock lock(&foreign_mu_);
        foreign_pushes_--;
      });
    }
  }

  void SweepLoop() {
    while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      absl::Time now = absl::Now();
      hub_.Sweep(now, core_->options().heartbeat_interval * 3);
      uint64_t shed = accept_guard::ShedConnections();
      core_->metrics().connections_shed.Increment({}, static_cast<double>(shed - shed_counted_));
      shed_counted_ = shed;
      uint64_t shed_for_handshakes = accept_guard::ShedForHandshakes();
      core_->metrics().handshakes_shed.Increment({}, static_cast<double>(shed_for_handshakes - handshakes_shed_counted_));
      handshakes_shed_counted_ = shed_for_handshakes;
      core_->metrics().pending_handshakes.Set({}, accept_guard::PendingHandshakes());
      core_->MaybeRotateIntermediate(now);
      core_->MaybeAdvanceRootRotation(now);
      core_->WarnOfCaExpiry(now);
      core_->MaybeRenewServerCertificate(now);
      const bool leads = core_->LeadsHousekeeping();
      core_->metrics().housekeeping_leader.Set({}, leads ? 1 : 0);
      if (leads && core_->connections() && now >= next_forget_ && !forgetting_.exchange(true)) {
        next_forget_ = now + kForgetEvery;
        core_->work().Post([this, now] {
          core_->connections()->ForgetDeadReplicas(now, kForgetReplicasAfter);
          forgetting_ = false;
        });
      }
      const absl::Duration compaction = core_->options().etcd_compaction_interval;
      if (leads && core_->connections() && compaction > absl::ZeroDuration() && now >= next_compaction_ &&
          !compacting_.exchange(true)) {
        next_compaction_ = now + compaction;
        core_->work().Post([this] {
          absl::Status compacted = core_->state().CompactHistory();
          if (!compacted.ok()) LogWarning("etcd_compaction_failed", {{"error", std::string(compacted.message())}});
          compacting_ = false;
        });
      }
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
  static absl::Status RemoveStaleSocket(const UnixSocketPath& socket_path) {
    const std::string& path = socket_path.path();
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
    std::strncpy(address.sun_path, socket_path.usable().c_str(), sizeof(address.sun_path) - 1);
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

  std::unique_ptr<Core> core_;  // first: the state (and its lock) goes last
  ReplicaFiles files_;          // watches the state's secrets: goes before it
  RelayHub hub_;
  CallerIdentifier identifier_;
  uint64_t handshakes_shed_counted_ = 0;
  uint64_t shed_counted_ = 0;  // sweeper thread only
  absl::Time next_forget_;     // sweeper thread only
  std::atomic<bool> forgetting_{false};
  absl::Time next_compaction_;  // sweeper thread only
  std::atomic<bool> compacting_{false};
  std::optional<std::pair<dev_t, ino_t>> admin_socket_id_;
  std::optional<UnixSocketPath> admin_socket_path_;  // holds its directory open while served
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
  absl::Mutex foreign_mu_;
  int foreign_pushes_ ABSL_GUARDED_BY(foreign_mu_) = 0;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

// The etcd backend as the options ask, with its secrets sealed unless plaintext is
// asked for explicitly.
absl::StatusOr<std::unique_ptr<state::StateStore>> OpenEtcdState(const ServerOptions& options) {
  state::EtcdOptions etcd = options.etcd;
  etcd.prefix = state::EtcdPrefixFor(options.ns);
  if (!options.state_encryption_key_file.empty()) {
    ASSIGN_OR_RETURN(etcd.cipher, state::SecretCipher::FromKeyFile(options.state_encryption_key_file));
  } else if (!options.state_plaintext_secrets) {
    return absl::FailedPreconditionError(
        "with --state=etcd the CA keys and tokens are stored in etcd, where they would be readable by anyone "
        "who can read etcd or its backups: give --state_encryption_key_file=FILE (create it with `head -c 32 "
        "/dev/urandom | base64 > FILE`, the same file on every replica), or --state_plaintext_secrets to "
        "store them unencrypted");
  } else {
    LogWarning("state_secrets_unencrypted", {{"advice", "give --state_encryption_key_file to encrypt them"}});
  }
  absl::StatusOr<std::unique_ptr<state::StateStore>> store = state::OpenEtcdStateStore(std::move(etcd));
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("cannot open the state in etcd: ", store.status().message()));
  }
  return store;
}

}  // namespace

bool AbslParseFlag(absl::string_view text, StateBackend* backend, std::string* error) {
  if (text == "local") {
    *backend = StateBackend::kLocal;
  } else if (text == "etcd") {
    *backend = StateBackend::kEtcd;
  } else {
    *error = "use local (one server, its state in --secrets_dir) or etcd (replicas sharing --etcd_endpoints)";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(StateBackend backend) { return backend == StateBackend::kEtcd ? "etcd" : "local"; }

absl::StatusOr<std::unique_ptr<ManagementServer>> ManagementServer::Start(ServerOptions options) {
  if (options.admin_socket.empty()) options.admin_socket = options.secrets_dir + "/admin.sock";
  std::unique_ptr<state::StateStore> state;
  ReplicaFiles files;
  if (options.state_backend == StateBackend::kLocal) {
    // First, before anything is read or written: one server per store (the local
    // backend locks the directory).
    state::LocalStateOptions local;
    local.dir = options.secrets_dir;
    local.ns = options.ns;
    local.holder = "relay-mgmt-server";
    local.busy_advice = "Stop that server, or start this one with another --secrets_dir.";
    local.repair_command =
        absl::StrCat("relayctl registry repair --mgmt_secrets_dir=", options.secrets_dir, " --namespace=", options.ns);
    ASSIGN_OR_RETURN(state, state::LocalStateStore::Open(local));
  } else {
    // Replicas share etcd, but each has a working directory of its own.
    ASSIGN_OR_RETURN(files.lock,
                     StateLock::Acquire(options.secrets_dir, "relay-mgmt-server (etcd replica)",
                                        "Each replica needs a --secrets_dir of its own: choose another."));
    ASSIGN_OR_RETURN(state, OpenEtcdState(options));
  }
  const config::MgmtServerValues& values = options.values;
  const bool secrets_in_kubernetes = options.secrets_backend == kube::SecretBackend::kKubernetes;
  if (secrets_in_kubernetes) {
    // The four relay secrets as Kubernetes Secrets, as the mesh keeps them; records and
    // snapshots stay with the state (a Role can then name each secret it may touch).
    ASSIGN_OR_RETURN(std::unique_ptr<secrets::SecretStore> kubernetes,
                     kube::OpenSecretStore(options.secrets_backend, "", options.kubeconfig));
    state = state::WithSecretsIn(std::move(state), std::move(kubernetes),
                                 {{options.ns, values.root_tls_secret},
                                  {options.ns, values.signing_tls_secret},
                                  {options.ns, values.tls_secret},
                                  {TokenNamespace(values, options.ns), values.token_secret.name}});
  }
  ASSIGN_OR_RETURN(ManagementPki pki, EnsureManagementPki(state->secrets(), Core::PkiOptions(options), absl::Now()));
  if (options.state_backend == StateBackend::kEtcd || secrets_in_kubernetes) {
    ASSIGN_OR_RETURN(files.store, secrets::DirectorySecretStore::Create(options.secrets_dir));
    // What the relay port reads, and what an operator copies to workload clusters (the
    // root certificate and the token), as a single server keeps them; never the CA keys.
    ASSIGN_OR_RETURN(files.mirror,
                     SecretMirror::Start(state->secrets(), *files.store,
                                         secrets_in_kubernetes
                                             // The token stays in the API: relayctl secrets export reads it there.
                                             ? std::vector<SecretMirror::Copied>{{options.ns, values.tls_secret, {}},
                                                                               {options.ns, values.root_tls_secret, {"ca.crt"}}}
                                             : std::vector<SecretMirror::Copied>{
                                                   {options.ns, values.tls_secret, {}},
                                                   {options.ns, values.root_tls_secret, {"ca.crt"}},
                                                   {TokenNamespace(values, options.ns), values.token_secret.name, {}}}));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ClusterRegistry> registry, ClusterRegistry::Load(state.get(), options.ns));
  const bool shared_state = options.state_backend == StateBackend::kEtcd;
  auto core = std::make_unique<Core>(std::move(options), std::move(state), std::move(pki), std::move(registry));
  if (shared_state) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    absl::BitGen random;
    std::string replica = absl::StrCat(host, "-", getpid(), "-", absl::Hex(absl::Uniform<uint32_t>(random)));
    core->AttachConnections(std::make_unique<ConnectionDirectory>(&core->state(), replica, kReplicaLivenessTtl));
    core->AttachElection(std::make_unique<state::LeaderElection>(&core->state(), "housekeeping", replica));
    LogInfo("replica", {{"id", replica}});
  }
  core->WatchSigningCa();
  core->WatchSharedToken();
  auto server = std::make_unique<ServerImpl>(std::move(core), std::move(files));
  RETURN_IF_ERROR(server->Serve());
  return server;
}

}  // namespace relay::mgmt
