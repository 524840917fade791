// relay rotator sidecar: see README.md ("Rotator").
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/names.h"
#include "common/ready_file.h"
#include "config/values.h"
#include "rotator/rotator.h"
#include "kube/secret_backend.h"

ABSL_FLAG(std::string, values, "",
          "Helm values file; the rotator reads glooAgent.relay from it. A flag given on the "
          "command line overrides the value it names.");
ABSL_FLAG(std::string, cluster, "",
          "Name of this workload cluster (a DNS label). Required here or as "
          "glooAgent.relay.cluster; overrides it when given.");
ABSL_FLAG(std::string, secrets_dir, "",
          "The secret store it shares with the agent. Empty: <workspace>/.relay/agent-<cluster> "
          "under `bazel run`, else ./.relay/agent-<cluster>.");
ABSL_FLAG(std::string, namespace, "gloo-mesh",
          "Namespace of the relay secrets. With --secrets=kubernetes and this flag not given: the pod's "
          "namespace (in-cluster) or the kubeconfig context's, when it names one.");
ABSL_FLAG(relay::kube::SecretBackend, secrets, relay::kube::SecretBackend::kDirectory,
          "Where the secrets it shares with the agent live: directory (files in --secrets_dir) or "
          "kubernetes (Secrets in --namespace through the API, written whole in one update, which the "
          "agent watches: in a pod through its service account, else through --kubeconfig).");
ABSL_FLAG(std::string, kubeconfig, "", relay::kube::kKubeconfigFlagHelp);
ABSL_FLAG(std::string, server_address, "127.0.0.1:9900",
          "host:port of the management server's relay, or several comma-separated (replicas: a random one is "
          "used and the others on failure; a DNS name with several records works the same). Overrides "
          "glooAgent.relay.serverAddress "
          "when given.");
ABSL_FLAG(std::string, authority, relay::config::kDefaultAuthority,
          "Name the management server's certificate must carry, sent as SNI. Overrides "
          "glooAgent.relay.authority when given.");
ABSL_FLAG(double, grace_period_ratio, 0.5,
          "Renew when this share of the certificate's lifetime remains, in (0, 1). Overrides "
          "glooAgent.relay.clientTlsSecretRotationGracePeriodRatio when given.");
ABSL_FLAG(bool, once, false,
          "Renew if due (with --force: now), then exit: for init containers and cron.");
ABSL_FLAG(bool, force, false,
          "Renew now, whatever the schedule and whatever the state of the client secret: a "
          "certificate that is missing, unreadable or expired is replaced through Register with "
          "the identity token.");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for /metrics (Prometheus text), e.g. 0.0.0.0:9093; empty: no metrics "
          "endpoint.");
ABSL_FLAG(std::string, health_address, "",
          "host:port for /healthz (fails when the client secret is unusable, expired, or past its "
          "rotation point after a failed renewal) and /readyz, e.g. 0.0.0.0:8093; empty: no "
          "health endpoint.");
ABSL_FLAG(std::string, ready_file, "", "File written once running, with metrics_port= and health_port=.");
ABSL_FLAG(absl::Duration, retry_max, absl::Minutes(2),
          "Longest wait between renewal retries; also how often a refused (deregistered) cluster "
          "asks again.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

constexpr char kProgram[] = "relay-rotator";

[[noreturn]] void Fail(const std::string& message) { relay::ExitWithError(kProgram, message); }

absl::Duration DurationFlag(const std::string& name, absl::Duration value) {
  return relay::PositiveDurationOrExit(kProgram, name, value);
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage(
      kProgram,
      "relay rotator: renews this cluster's client certificate (relay-client-tls-secret) at the "
      "grace ratio and hands it to the agent atomically.\n"
      "Usage: rotator --cluster=NAME [--values=values.yaml] [--once] [--force] [--flags...]");
  std::vector<char*> rest = relay::ParseFlags(argc, argv);
  if (rest.size() > 1) Fail(absl::StrCat("unexpected argument \"", rest[1], "\": the rotator takes only flags"));
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

  relay::rotator::RotatorOptions options;
  options.cluster = settings->cluster;
  options.secrets = settings->secrets;
  options.server = settings->server;
  options.grace_period_ratio = settings->grace_period_ratio;
  std::string secrets_dir =
      relay::DefaultStateDir(absl::GetFlag(FLAGS_secrets_dir), "agent-" + options.cluster);
  options.force = absl::GetFlag(FLAGS_force);
  options.retry.max = DurationFlag("retry_max", absl::GetFlag(FLAGS_retry_max));

  const relay::kube::SecretBackend backend = absl::GetFlag(FLAGS_secrets);
  const std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  if (absl::Status flags = relay::kube::CheckSecretFlags(backend, kubeconfig); !flags.ok()) {
    Fail(std::string(flags.message()));
  }
  absl::StatusOr<std::unique_ptr<relay::secrets::SecretStore>> store =
      relay::kube::OpenSecretStore(backend, secrets_dir, kubeconfig);
  if (!store.ok()) Fail(std::string(store.status().message()));
  relay::Metrics metrics;
  relay::rotator::Rotator rotator(options, store->get(), &metrics);

  if (absl::GetFlag(FLAGS_once)) {
    absl::Status status = rotator.RunOnce();
    if (!status.ok()) Fail(std::string(status.message()));
    return 0;
  }

  relay::BlockTerminationSignals();
  std::unique_ptr<relay::HttpEndpoints> metrics_http, health_http;
  if (!absl::GetFlag(FLAGS_metrics_address).empty()) {
    auto started = relay::HttpEndpoints::Start(absl::GetFlag(FLAGS_metrics_address),
                                               {[&metrics] { return metrics.Render(); }, nullptr, nullptr});
    if (!started.ok()) Fail(std::string(started.status().message()));
    metrics_http = *std::move(started);
  }
  if (!absl::GetFlag(FLAGS_health_address).empty()) {
    auto started = relay::HttpEndpoints::Start(
        absl::GetFlag(FLAGS_health_address),
        {nullptr, [&rotator] { return rotator.HealthProblem(); }, [] { return std::string(); }});
    if (!started.ok()) Fail(std::string(started.status().message()));
    health_http = *std::move(started);
  }
  if (relay::TestClockOffset() != absl::ZeroDuration()) {
    relay::LogWarning("test_clock_offset", {{"offset", absl::FormatDuration(relay::TestClockOffset())},
                                            {"why", "RELAY_TEST_CLOCK_OFFSET is set: a test hook, never for production"}});
  }
  relay::LogInfo("starting", {{"cluster", options.cluster},
                              {"secrets", relay::kube::DescribeSecretBackend(backend, secrets_dir, kubeconfig)},
                              {"server", options.server.address},
                              {"grace_period_ratio", absl::StrCat(options.grace_period_ratio)}});
  rotator.Start();
  if (absl::Status written = relay::WriteReadyFile(
          absl::GetFlag(FLAGS_ready_file), {{"metrics_port", absl::StrCat(metrics_http ? metrics_http->port() : 0)},
                                            {"health_port", absl::StrCat(health_http ? health_http->port() : 0)}});
      !written.ok()) {
    Fail(std::string(written.message()));
  }
  relay::WaitForTerminationSignal();
  relay::LogInfo("stopping");
  rotator.Stop();
  return 0;
}
