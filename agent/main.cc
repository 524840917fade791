// relay agent: see README.md ("Agent").
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "config/values.h"

ABSL_FLAG(std::string, values, "",
          "Helm values file; the agent reads glooAgent.relay from it. A flag given on the "
          "command line overrides the value it names.");
ABSL_FLAG(std::string, cluster, "",
          "Name of this workload cluster (a DNS label), the client certificate's DNS SAN. "
          "Required here or as glooAgent.relay.cluster; overrides it when given.");
ABSL_FLAG(std::string, secrets_dir, "",
          "Where the agent keeps its state: the directory secret store holding "
          "relay-root-tls-secret, the token and relay-client-tls-secret. Created when the agent "
          "first writes to it. Empty: <workspace>/.relay/agent-<cluster> under `bazel run`, else "
          "./.relay/agent-<cluster>.");
ABSL_FLAG(std::string, namespace, "gloo-mesh",
          "Namespace of the relay secrets. With --secrets=kubernetes and this flag not given: the pod's "
          "namespace (in-cluster) or the kubeconfig context's, when it names one.");
ABSL_FLAG(relay::kube::SecretBackend, secrets, relay::kube::SecretBackend::kDirectory,
          "Where relay-root-tls-secret, the token, relay-client-tls-secret and the agent's state live: "
          "directory (files in --secrets_dir) or kubernetes (Secrets in --namespace through the API, so "
          "the certificate outlives the pod: in a pod through its service account, else through "
          "--kubeconfig). Snapshots still go to --output_dir.");
ABSL_FLAG(std::string, kubeconfig, "", relay::kube::kKubeconfigFlagHelp);
ABSL_FLAG(std::string, server_address, "127.0.0.1:9900",
          "host:port of the management server's relay, or several comma-separated (replicas: a random one is "
          "used and the others on failure; a DNS name with several records works the same). Overrides "
          "glooAgent.relay.serverAddress "
          "when given.");
ABSL_FLAG(std::string, authority, relay::config::kDefaultAuthority,
          "Name the management server's certificate must carry, sent as SNI. Overrides "
          "glooAgent.relay.authority when given.");
ABSL_FLAG(std::string, output_dir, "",
          "Directory where snapshots pushed to this cluster are written (atomically, kubelet "
          "layout). Empty: <secrets_dir>/output.");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for /metrics (Prometheus text), e.g. 0.0.0.0:9092; empty: no metrics "
          "endpoint.");
ABSL_FLAG(std::string, health_address, "",
          "host:port for /healthz and /readyz (ready while the relay stream is up), e.g. "
          "0.0.0.0:8092; empty: no health endpoint.");
ABSL_FLAG(std::string, ready_file, "", "File written once the relay stream is up.");
ABSL_FLAG(absl::Duration, local_cert_lifetime, absl::Hours(720),
          "Lifetime of a client certificate the agent signs itself with the root's tls.key.");
ABSL_FLAG(absl::Duration, max_backoff, absl::Seconds(30),
          "Longest wait between attempts to reach the server (reconnects, and registration "
          "while the server is not there yet).");
ABSL_FLAG(relay::agent::Rotation, rotation, relay::agent::Rotation::kSidecar,
          "Who renews the client certificate: sidecar (the rotator container) or builtin (the "
          "same rotation inside the agent).");
ABSL_FLAG(double, grace_period_ratio, 0.5,
          "With --rotation=builtin: renew when this share of the lifetime remains, in (0, 1). "
          "Overrides glooAgent.relay.clientTlsSecretRotationGracePeriodRatio when given.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

constexpr char kProgram[] = "relay-agent";

[[noreturn]] void Fail(const std::string& message) { relay::ExitWithError(kProgram, message); }

absl::Duration DurationFlag(const std::string& name, absl::Duration value) {
  return relay::PositiveDurationOrExit(kProgram, name, value);
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage(
      kProgram,
      "relay agent: obtains a client certificate for this workload cluster and keeps an mTLS "
      "relay stream to the management server.\n"
      "Usage: agent --cluster=NAME [--values=values.yaml] [--flags...]");
  std::vector<char*> rest = relay::ParseFlags(argc, argv);
  if (rest.size() > 1) Fail(absl::StrCat("unexpected argument \"", rest[1], "\": the agent takes only flags"));
  relay::SetLogLevelOrExit(kProgram, absl::GetFlag(FLAGS_log_level));

  absl::StatusOr<relay::config::AgentValues> values =
      relay::config::LoadAgentValues(absl::GetFlag(FLAGS_values));
  if (!values.ok()) Fail(std::string(values.status().message()));

  absl::StatusOr<relay::enrolment::WorkloadSettings> settings = relay::enrolment::ResolveWorkloadSettings(
      *values,
      relay::kube::NamespaceFor(absl::GetFlag(FLAGS_namespace), relay::FlagGiven("namespace"),
                                absl::GetFlag(FLAGS_secrets), absl::GetFlag(FLAGS_kubeconfig)),
      relay::GivenFlag(FLAGS_cluster, "cluster"),
      relay::GivenFlag(FLAGS_server_address, "server_address"),
      relay::GivenFlag(FLAGS_authority, "authority"),
      relay::GivenFlag(FLAGS_grace_period_ratio, "grace_period_ratio"));
  if (!settings.ok()) Fail(std::string(settings.status().message()));

  relay::agent::AgentOptions options;
  options.cluster = settings->cluster;
  options.secrets = settings->secrets;
  options.server = settings->server;
  options.grace_period_ratio = settings->grace_period_ratio;
  options.secrets_dir =
      relay::DefaultStateDir(absl::GetFlag(FLAGS_secrets_dir), "agent-" + options.cluster);
  options.secrets_backend = absl::GetFlag(FLAGS_secrets);
  options.kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  if (absl::Status flags = relay::kube::CheckSecretFlags(options.secrets_backend, options.kubeconfig); !flags.ok()) {
    Fail(std::string(flags.message()));
  }
  options.output_dir = absl::GetFlag(FLAGS_output_dir).empty() ? options.secrets_dir + "/output"
                                                               : absl::GetFlag(FLAGS_output_dir);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.health_address = absl::GetFlag(FLAGS_health_address);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  options.local_cert_lifetime =
      DurationFlag("local_cert_lifetime", absl::GetFlag(FLAGS_local_cert_lifetime));
  options.max_backoff = DurationFlag("max_backoff", absl::GetFlag(FLAGS_max_backoff));
  options.rotation = absl::GetFlag(FLAGS_rotation);

  relay::BlockTerminationSignals();
  if (relay::TestClockOffset() != absl::ZeroDuration()) {
    relay::LogWarning("test_clock_offset", {{"offset", absl::FormatDuration(relay::TestClockOffset())},
                                            {"why", "RELAY_TEST_CLOCK_OFFSET is set: a test hook, never for production"}});
  }
  relay::LogInfo("starting", {{"cluster", options.cluster},
                              {"secrets", relay::kube::DescribeSecretBackend(options.secrets_backend,
                                                                             options.secrets_dir, options.kubeconfig)},
                              {"server", options.server.address},
                              {"authority", options.server.authority}});
  absl::StatusOr<std::unique_ptr<relay::agent::Agent>> agent = relay::agent::Agent::Start(options);
  if (!agent.ok()) {
    relay::LogError("start_failed", {{"error", std::string(agent.status().message())}});
    Fail(std::string(agent.status().message()));
  }
  relay::agent::Agent* running = agent->get();
  std::thread signals([running] {
    relay::WaitForTerminationSignal();
    relay::LogInfo("stopping");
    running->Shutdown();
  });
  signals.detach();
  running->Wait();
  agent->reset();
  relay::LogInfo("stopped");
  return 0;
}
