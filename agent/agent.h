#ifndef RELAY_AGENT_AGENT_H_
#define RELAY_AGENT_AGENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/version.h"
#include "enrolment/client_credentials.h"
#include "kube/secret_backend.h"

namespace relay::agent {

// Who renews the client certificate.
enum class Rotation {
  kSidecar,  // the rotator sidecar (default)
  kBuiltin,  // the same rotation inside the agent, for set-ups without a sidecar
};
// As a flag: --rotation=sidecar|builtin.
bool AbslParseFlag(absl::string_view text, Rotation* rotation, std::string* error);
std::string AbslUnparseFlag(Rotation rotation);

struct AgentOptions {
  std::string cluster;
  // Where the root, token, client certificate and the agent's own state live: the
  // directory secrets_dir, or Kubernetes Secrets (through kubeconfig, or in-cluster when
  // empty), which outlive the pod.
  kube::SecretBackend secrets_backend = kube::SecretBackend::kDirectory;
  std::string kubeconfig;
  std::string secrets_dir;
  enrolment::WorkloadSecrets secrets;
  enrolment::ServerEndpoint server;
  std::string output_dir;       // where snapshots land
  std::string metrics_address;  // empty: no metrics endpoint
  std::string health_address;   // empty: no /healthz and /readyz
  std::string ready_file;       // written once the relay stream is up
  // Lifetime of a certificate the agent signs itself with the root's tls.key.
  absl::Duration local_cert_lifetime = absl::Hours(24 * 30);
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  std::string version = std::string("relay-agent/") + kVersion;
  Rotation rotation = Rotation::kSidecar;
  double grace_period_ratio = 0.5;
  Clock* clock = &Clock::Real();  // tests move time instead of sleeping
};

class Agent {
 public:
  // Obtains credentials in the order of DESIGN.md (a valid client secret; the root's
  // tls.key; the token and Register) and starts the relay loop. Fails, saying exactly
  // what is missing, when this side has no way to get a certificate; when the server
  // is not there yet or refuses, the loop keeps trying with backoff.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(AgentOptions options);
  virtual ~Agent() = default;

  virtual void Shutdown() = 0;
  virtual void Wait() = 0;
};

}  // namespace relay::agent

#endif  // RELAY_AGENT_AGENT_H_
