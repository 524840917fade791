// relay management server: see README.md ("Management server").
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <thread>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "config/values.h"
#include "mgmt/server.h"

ABSL_FLAG(std::string, values, "",
          "Helm values file; the server reads glooMgmtServer.relay from it. Flags given on the "
          "command line override values.");
ABSL_FLAG(std::string, secrets_dir, "",
          "Where the server keeps its state: the directory secret store (kubelet secret-volume "
          "layout), the registry journal, the store lock and the admin socket. Empty: "
          "<workspace>/.relay/mgmt under `bazel run`, else ./.relay/mgmt.");
ABSL_FLAG(std::string, namespace, "gloo-mesh",
          "Namespace of the relay secrets. With --secrets=kubernetes and this flag not given: the pod's "
          "namespace (in-cluster) or the kubeconfig context's, when it names one.");
ABSL_FLAG(relay::kube::SecretBackend, secrets, relay::kube::SecretBackend::kDirectory,
          "Where the root, signing, server and token secrets live: directory (with the state: in "
          "--secrets_dir, or in etcd with --state=etcd) or kubernetes (Secrets in --namespace through the "
          "API: in a pod through its service account, else through --kubeconfig). Records and snapshots "
          "stay with --state either way.");
ABSL_FLAG(std::string, kubeconfig, "", relay::kube::kKubeconfigFlagHelp);
ABSL_FLAG(relay::mgmt::StateBackend, state, relay::mgmt::StateBackend::kLocal,
          "Where the state lives: local (everything in --secrets_dir; one server) or etcd (shared by "
          "several replicas; --secrets_dir is then this replica's own working directory). Overrides "
          "glooMgmtServer.relay.state.backend.");
ABSL_FLAG(std::vector<std::string>, etcd_endpoints, {},
          "With --state=etcd: host:port of the etcd members, comma-separated (state.etcd.endpoints).");
ABSL_FLAG(std::string, etcd_ca_file, "",
          "With --state=etcd: CA bundle that signed etcd's serving certificate; set, calls use TLS "
          "(state.etcd.caFile).");
ABSL_FLAG(std::string, etcd_cert_file, "", "Client certificate for etcd's client-cert auth (state.etcd.certFile).");
ABSL_FLAG(std::string, etcd_key_file, "", "Key of --etcd_cert_file (state.etcd.keyFile).");
ABSL_FLAG(std::string, state_encryption_key_file, "",
          "With --state=etcd: 32-byte key (raw or base64) that seals CA keys and tokens in etcd with "
          "AES-256-GCM; the same file on every replica (state.encryptionKeyFile). Make one with "
          "`head -c 32 /dev/urandom | base64 > FILE`.");
ABSL_FLAG(bool, state_plaintext_secrets, false,
          "With --state=etcd and no key file: store secrets in etcd unencrypted instead of refusing to "
          "start (state.plaintextSecrets).");
ABSL_FLAG(absl::Duration, etcd_compaction_interval, absl::Minutes(5),
          "With --state=etcd: every this long, the elected replica compacts etcd's history to the "
          "revision of the previous round, as kube-apiserver's --etcd-compaction-interval does (etcd "
          "otherwise keeps every revision until its space quota refuses all writes). 0: never; leave it "
          "to etcd's --auto-compaction-retention. Compaction is etcd-wide: with an etcd shared with "
          "others, agree on who compacts.");
ABSL_FLAG(std::string, grpc_address, "0.0.0.0:9900",
          "host:port of the relay (Register, Renew, Connect); port 0 picks a free port.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9091",
          "host:port for /metrics (Prometheus text); empty: no metrics endpoint. Loopback by default: the "
          "metrics name every cluster. To let Prometheus scrape from elsewhere, give an address it reaches "
          "(the shipped manifests use 0.0.0.0:9091 behind a NetworkPolicy).");
ABSL_FLAG(std::string, health_address, "0.0.0.0:8090",
          "host:port for /healthz and /readyz (they say only ok or not ready, for kubelets and load "
          "balancers); empty: no health endpoint.");
ABSL_FLAG(std::string, admin_socket, "",
          "Admin API Unix socket (mode 0600) used by relayctl. Empty: <secrets_dir>/admin.sock.");
ABSL_FLAG(absl::Duration, client_cert_ttl, absl::Hours(720),
          "Lifetime of issued client certificates, e.g. 720h or 30s. Overrides "
          "glooMgmtServer.relay.clientCertTtl when given.");
ABSL_FLAG(std::vector<std::string>, server_san, {},
          "Extra DNS name or IP address for the server certificate; repeat the flag or separate "
          "with commas. The authority is always included.");
ABSL_FLAG(std::string, authority, relay::config::kDefaultAuthority,
          "Name the server certificate carries and agents verify (glooAgent.relay.authority).");
ABSL_FLAG(std::string, ready_file, "",
          "File written once the server serves, with grpc_port=, metrics_port=, health_port=.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "How often agents send heartbeats; a stream silent for three intervals is closed.");
ABSL_FLAG(double, server_cert_grace_ratio, 0.5,
          "The server renews its own certificate when this share of its lifetime remains, in "
          "(0, 1).");
ABSL_FLAG(absl::Duration, server_cert_lifetime, absl::Hours(8760), "Lifetime of the server certificates it issues.");
ABSL_FLAG(absl::Duration, intermediate_lifetime, absl::Hours(24 * 1825),
          "Lifetime of an intermediate signing CA the server makes (at first start and at each rotation). "
          "It is replaced when a sixth of it remains, and never later than two client certificate lifetimes "
          "before it expires; it must be longer than two client certificate lifetimes.");
ABSL_FLAG(absl::Duration, root_lifetime, absl::Hours(24 * 3650),
          "Lifetime of the root CA the server makes: at first start, and the new root of each root rotation "
          "(relayctl ca rotate-root).");
ABSL_FLAG(absl::Duration, root_cross_certificate_lifetime, absl::Hours(24 * 90),
          "During a root rotation, from its switch on, certificate chains carry the new root cross-certified "
          "by the old one for this long (never past the old root's expiry), so an agent that was offline "
          "through the rotation and holds only the old root comes back by itself. 0 turns it off (rotating "
          "away from a compromised root: such agents then need the new root copied to them).");
ABSL_FLAG(absl::Duration, renew_now_window, absl::Minutes(2),
          "At a root rotation's switch, every connected agent is asked to renew its certificate within this "
          "window, each at a random moment in it (spreading the load), so the switch completes without waiting "
          "a client certificate lifetime. 0 turns the ask off.");
ABSL_FLAG(bool, grpc_reflection, false,
          "Serve gRPC server reflection (what grpcurl lists) on the relay port and the admin socket. Off by "
          "default: on the public relay port it tells anyone who connects the definition of every service.");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "A relay connection that has not finished its TLS handshake by then is closed, so idle "
          "connections cannot pile up.");
ABSL_FLAG(int, max_pending_handshakes, 512,
          "While this many relay connections are still in their TLS handshake, new connections are closed at "
          "once (agents retry with backoff), so slow or idle connections cannot tie up the server and a "
          "reconnecting fleet is admitted at the pace the server completes handshakes. 0: no bound.");
ABSL_FLAG(int, max_concurrent_streams, 16,
          "Streams one relay connection may have open at once (an agent uses two: its relay stream and a "
          "renewal). Further calls on that connection wait.");
ABSL_FLAG(int, max_receive_message_bytes, 64 * 1024,
          "Largest message a caller may send on any relay method (Register, Renew, the relay stream); a larger "
          "one ends the call with RESOURCE_EXHAUSTED. Agents' messages are a few KiB.");
ABSL_FLAG(double, registrations_per_second_per_source, 10,
          "Register calls one source address may make a second, on average (a token bucket per address), so "
          "one holder of the shared token cannot create cluster names without limit; beyond it the call is "
          "RESOURCE_EXHAUSTED and counted in relay_certificates_refused_total{reason=\"rate_limited\"}. Renewals "
          "are not limited. 0: no limit (a fleet behind one NAT address registering at once may need it higher).");
ABSL_FLAG(double, registration_burst_per_source, 100,
          "Register calls one source address may make at once before --registrations_per_second_per_source "
          "applies.");
ABSL_FLAG(absl::Duration, min_ping_interval, absl::Seconds(20),
          "HTTP/2 keepalive enforcement: a client that pings more often than this while sending no data is "
          "sent GOAWAY (too_many_pings) after two such pings. Agents do not ping; their heartbeats are data.");
ABSL_FLAG(bool, strict_reregistration, false,
          "Refuse a Register with the shared token whenever the cluster holds a valid certificate. "
          "By default it is refused only while the cluster's agent is connected (a pod that lost "
          "its key may register again); choose this where agents keep their certificates across "
          "restarts. An operator's admit (relayctl register) or a bound bootstrap token still "
          "replaces it.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

constexpr char kProgram[] = "relay-mgmt-server";

[[noreturn]] void Fail(const std::string& message) { relay::ExitWithError(kProgram, message); }

absl::Duration DurationFlag(const std::string& name, absl::Duration value) {
  return relay::PositiveDurationOrExit(kProgram, name, value);
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage(
      kProgram,
      "relay management server: creates the relay CAs, server certificate and identity token "
      "on first start, signs agents' CSRs and serves the mTLS relay.\n"
      "Usage: server [--values=values.yaml] [--flags...]");
  std::vector<char*> args = relay::MergeRepeatedListFlags(argc, argv, {"server_san", "etcd_endpoints"});
  std::vector<char*> rest = relay::ParseFlags(static_cast<int>(args.size()), args.data());
  if (rest.size() > 1) Fail(absl::StrCat("unexpected argument \"", rest[1], "\": the server takes only flags"));

  relay::SetLogLevelOrExit(kProgram, absl::GetFlag(FLAGS_log_level));

  absl::StatusOr<relay::config::MgmtServerValues> values =
      relay::config::LoadMgmtServerValues(absl::GetFlag(FLAGS_values));
  if (!values.ok()) Fail(std::string(values.status().message()));

  relay::mgmt::ServerOptions options;
  options.values = *values;
  if (relay::FlagGiven("client_cert_ttl")) {
    options.values.client_cert_ttl =
        DurationFlag("client_cert_ttl", absl::GetFlag(FLAGS_client_cert_ttl));
  }
  options.secrets_dir = relay::DefaultStateDir(absl::GetFlag(FLAGS_secrets_dir), "mgmt");
  options.secrets_backend = absl::GetFlag(FLAGS_secrets);
  options.kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  options.ns = relay::kube::NamespaceFor(absl::GetFlag(FLAGS_namespace), relay::FlagGiven("namespace"),
                                         options.secrets_backend, options.kubeconfig);
  if (absl::Status flags = relay::kube::CheckSecretFlags(options.secrets_backend, options.kubeconfig); !flags.ok()) {
    Fail(std::string(flags.message()));
  }
  const relay::config::StateValues& state = options.values.state;
  options.state_backend = state.backend == "etcd" ? relay::mgmt::StateBackend::kEtcd : relay::mgmt::StateBackend::kLocal;
  options.state_backend = relay::FlagOr(FLAGS_state, "state", options.state_backend);
  options.etcd.endpoints = relay::FlagOr(FLAGS_etcd_endpoints, "etcd_endpoints", state.etcd_endpoints);
  options.etcd.ca_file = relay::FlagOr(FLAGS_etcd_ca_file, "etcd_ca_file", state.etcd_ca_file);
  options.etcd.cert_file = relay::FlagOr(FLAGS_etcd_cert_file, "etcd_cert_file", state.etcd_cert_file);
  options.etcd.key_file = relay::FlagOr(FLAGS_etcd_key_file, "etcd_key_file", state.etcd_key_file);
  options.state_encryption_key_file =
      relay::FlagOr(FLAGS_state_encryption_key_file, "state_encryption_key_file", state.encryption_key_file);
  options.state_plaintext_secrets =
      relay::FlagOr(FLAGS_state_plaintext_secrets, "state_plaintext_secrets", state.plaintext_secrets);
  if (options.state_backend == relay::mgmt::StateBackend::kEtcd && options.etcd.endpoints.empty()) {
    Fail("--state=etcd needs --etcd_endpoints=host:port[,host:port...] (or glooMgmtServer.relay.state.etcd.endpoints)");
  }
  for (auto [name, address, may_be_empty] :
       {std::tuple<const char*, std::string, bool>{"grpc_address", absl::GetFlag(FLAGS_grpc_address), false},
        {"metrics_address", absl::GetFlag(FLAGS_metrics_address), true},
        {"health_address", absl::GetFlag(FLAGS_health_address), true}}) {
    if (absl::Status valid = relay::CheckListenAddress(name, address, may_be_empty); !valid.ok()) {
      Fail(std::string(valid.message()));
    }
  }
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.health_address = absl::GetFlag(FLAGS_health_address);
  options.admin_socket = absl::GetFlag(FLAGS_admin_socket);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.authority = absl::GetFlag(FLAGS_authority);
  options.heartbeat_interval = DurationFlag("heartbeat_interval", absl::GetFlag(FLAGS_heartbeat_interval));
  options.etcd_compaction_interval = absl::GetFlag(FLAGS_etcd_compaction_interval);
  if (options.etcd_compaction_interval < absl::ZeroDuration()) Fail("--etcd_compaction_interval must not be negative");
  options.server_cert_grace_ratio = absl::GetFlag(FLAGS_server_cert_grace_ratio);
  if (!(options.server_cert_grace_ratio > 0 && options.server_cert_grace_ratio < 1)) {
    Fail("--server_cert_grace_ratio must be strictly between 0 and 1");
  }
  options.strict_reregistration = absl::GetFlag(FLAGS_strict_reregistration);
  options.handshake_timeout = DurationFlag("handshake_timeout", absl::GetFlag(FLAGS_handshake_timeout));
  options.grpc_reflection = absl::GetFlag(FLAGS_grpc_reflection);
  options.max_pending_handshakes = absl::GetFlag(FLAGS_max_pending_handshakes);
  if (options.max_pending_handshakes < 0) Fail("--max_pending_handshakes must be 0 (no bound) or more");
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  if (options.max_concurrent_streams < 2) {
    Fail("--max_concurrent_streams must be at least 2 (an agent holds its relay stream while it renews)");
  }
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_receive_message_bytes);
  if (options.max_receive_message_bytes < 16 * 1024) {
    Fail("--max_receive_message_bytes must be at least 16384: a certificate request alone can take several KiB");
  }
  options.registrations_per_second_per_source = absl::GetFlag(FLAGS_registrations_per_second_per_source);
  options.registration_burst_per_source = absl::GetFlag(FLAGS_registration_burst_per_source);
  if (options.registrations_per_second_per_source < 0 ||
      (options.registrations_per_second_per_source > 0 && options.registration_burst_per_source < 1)) {
    Fail("--registrations_per_second_per_source must be 0 (no limit) or more, and "
         "--registration_burst_per_source at least 1");
  }
  options.min_ping_interval = DurationFlag("min_ping_interval", absl::GetFlag(FLAGS_min_ping_interval));
  options.server_cert_lifetime =
      DurationFlag("server_cert_lifetime", absl::GetFlag(FLAGS_server_cert_lifetime));
  options.intermediate_lifetime =
      DurationFlag("intermediate_lifetime", absl::GetFlag(FLAGS_intermediate_lifetime));
  options.root_lifetime = DurationFlag("root_lifetime", absl::GetFlag(FLAGS_root_lifetime));
  options.root_cross_certificate_lifetime = absl::GetFlag(FLAGS_root_cross_certificate_lifetime);
  options.renew_now_window = absl::GetFlag(FLAGS_renew_now_window);
  if (options.renew_now_window < absl::ZeroDuration()) Fail("--renew_now_window must not be negative (0 turns it off)");
  if (options.root_cross_certificate_lifetime < absl::ZeroDuration()) {
    Fail("--root_cross_certificate_lifetime must not be negative (0 turns cross-certificates off)");
  }
  if (options.root_lifetime <= options.intermediate_lifetime) {
    Fail(absl::StrCat("--root_lifetime=", absl::FormatDuration(options.root_lifetime),
                      " must be longer than --intermediate_lifetime=", absl::FormatDuration(options.intermediate_lifetime),
                      ": an intermediate never outlives its root"));
  }
  if (options.intermediate_lifetime <= options.values.client_cert_ttl * 2) {
    Fail(absl::StrCat("--intermediate_lifetime=", absl::FormatDuration(options.intermediate_lifetime),
                      " must be longer than two client certificate lifetimes (",
                      absl::FormatDuration(options.values.client_cert_ttl * 2),
                      "): every leaf must be able to live out its lifetime under the intermediate that issued it"));
  }
  if (absl::Status sans = relay::SplitSans(absl::GetFlag(FLAGS_server_san), &options.server_dns_names,
                                           &options.server_ip_addresses);
      !sans.ok()) {
    Fail(std::string(sans.message()));
  }

  relay::BlockTerminationSignals();
  uint64_t open_files = relay::RaiseOpenFileLimit();
  relay::LogInfo("starting", {{"secrets_dir", options.secrets_dir},
                              {"state", relay::mgmt::AbslUnparseFlag(options.state_backend)},
                              {"secrets", relay::kube::DescribeSecretBackend(options.secrets_backend,
                                                                             options.secrets_dir, options.kubeconfig)},
                              {"namespace", options.ns},
                              {"open_file_limit", absl::StrCat(open_files)}});
  absl::StatusOr<std::unique_ptr<relay::mgmt::ManagementServer>> server =
      relay::mgmt::ManagementServer::Start(options);
  if (!server.ok()) {
    relay::LogError("start_failed", {{"error", std::string(server.status().message())}});
    Fail(std::string(server.status().message()));
  }
  relay::mgmt::ManagementServer* running = server->get();
  std::thread signals([running] {
    relay::WaitForTerminationSignal();
    relay::LogInfo("stopping");
    running->Shutdown();
  });
  signals.detach();
  running->Wait();
  server->reset();
  relay::LogInfo("stopped");
  return 0;
}
