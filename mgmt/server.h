#ifndef RELAY_MGMT_SERVER_H_
#define RELAY_MGMT_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/values.h"
#include "kube/secret_backend.h"
#include "state/etcd_state_store.h"

namespace relay::mgmt {

enum class StateBackend {
  kLocal,  // secrets_dir holds everything; one server on it
  kEtcd,   // etcd holds the state; several replicas share it
};

// As a flag: --state=local|etcd.
bool AbslParseFlag(absl::string_view text, StateBackend* backend, std::string* error);
std::string AbslUnparseFlag(StateBackend backend);

struct ServerOptions {
  // The state: with kLocal, the directory of everything; with kEtcd, this replica's own
  // working directory (its admin socket, and the copies of the TLS secrets its relay
  // port reads).
  std::string secrets_dir;
  StateBackend state_backend = StateBackend::kLocal;
  // With kEtcd: the members and TLS to them. Keys live under /relay/<ns>/.
  state::EtcdOptions etcd;
  // With kEtcd, secrets are sealed under this key (secret_cipher.h); without one the
  // server refuses to start unless state_plaintext_secrets says so.
  std::string state_encryption_key_file;
  bool state_plaintext_secrets = false;
  // With kEtcd: how often the elected replica compacts etcd's history (0: never).
  absl::Duration etcd_compaction_interval = absl::Minutes(5);
  // Where the CA, server and token secrets live: with the state (kDirectory: in
  // secrets_dir or, with kEtcd, in etcd), or as Kubernetes Secrets (kKubernetes, through
  // `kubeconfig` or in-cluster). Records and snapshots stay with the state either way.
  kube::SecretBackend secrets_backend = kube::SecretBackend::kDirectory;
  std::string kubeconfig;
  std::string ns = config::kDefaultNamespace;
  config::MgmtServerValues values;
  std::string grpc_address = "0.0.0.0:9900";
  std::string metrics_address = "127.0.0.1:9091";  // empty: no metrics endpoint
  std::string health_address = "0.0.0.0:8090";   // empty: no health endpoint
  std::string admin_socket;  // empty: <secrets_dir>/admin.sock
  std::string ready_file;    // written once serving: grpc_port=, metrics_port=, health_port=
  std::string authority = config::kDefaultAuthority;
  std::vector<std::string> server_dns_names;
  std::vector<std::string> server_ip_addresses;
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // The server renews its own certificate when this share of its lifetime remains.
  double server_cert_grace_ratio = 0.5;
  absl::Duration server_cert_lifetime = absl::Hours(24 * 365);
  // Lifetime of an intermediate the server makes (at first start, and at each rotation).
  absl::Duration intermediate_lifetime = absl::Hours(24 * 1825);
  // Lifetime of a new root made by a root rotation.
  absl::Duration root_lifetime = absl::Hours(24 * 3650);
  // From a root rotation's switch, how long chains carry the new root cross-certified
  // by the old one (never past the old root's expiry): an agent offline through the
  // rotation that comes back within it re-registers by itself (DESIGN.md "Root rotation").
  absl::Duration root_cross_certificate_lifetime = absl::Hours(24 * 90);
  // At a root rotation's switch every agent is asked to renew within this window (each
  // at a random moment in it), so the switch's gate passes without waiting a client
  // lifetime; 0 turns the ask off.
  absl::Duration renew_now_window = absl::Minutes(2);
  // Refuse a Register with the shared token whenever the cluster holds a valid
  // certificate, online or not (for agents that keep their certificates across restarts).
  bool strict_reregistration = false;
  // A relay connection that has not completed its TLS handshake by then is closed.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // While this many relay connections are in their TLS handshake, new ones are closed
  // at once (0: no bound). Only //mgmt:server counts handshakes (tls_handshake_count.cc).
  int max_pending_handshakes = 512;
  // HTTP/2 streams one relay connection may hold at once (an agent needs two).
  int max_concurrent_streams = 16;
  // Largest message a caller may send on any relay method; larger ones end the call
  // with RESOURCE_EXHAUSTED. Every agent message and request is a few KiB.
  int max_receive_message_bytes = 64 * 1024;
  // Register calls each source address may make: a token bucket per source (0: no limit).
  double registrations_per_second_per_source = 10;
  double registration_burst_per_source = 100;
  // A client that pings more often than this without sending data is sent GOAWAY
  // ("too_many_pings") after two such pings.
  absl::Duration min_ping_interval = absl::Seconds(20);
  // gRPC server reflection on the relay port and the admin socket (off: it describes
  // every service to anyone who connects).
  bool grpc_reflection = false;
};


class ManagementServer {
 public:
  // Locks the state directory (one server per store), ensures the secrets, then serves
  // the relay, admin, metrics and health endpoints.
  static absl::StatusOr<std::unique_ptr<ManagementServer>> Start(ServerOptions options);
  virtual ~ManagementServer() = default;

  virtual int grpc_port() const = 0;
  // Blocks until Shutdown() is called (from a signal handler thread or another thread).
  virtual void Wait() = 0;
  virtual void Shutdown() = 0;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_SERVER_H_
