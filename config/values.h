#ifndef RELAY_CONFIG_VALUES_H_
#define RELAY_CONFIG_VALUES_H_

// Helm values (the chart's glooMgmtServer.relay.* and glooAgent.relay.*) to typed
// options. Each binary reads its own section; other sections and the chart's other
// keys are left alone, but inside a `relay` section every key must be known, of the
// right type and in range, or loading fails with the key path and the file.
// Empty string or null means "the default", as in the Helm chart.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace relay::config {

inline constexpr char kDefaultNamespace[] = "gloo-mesh";
inline constexpr char kDefaultAuthority[] = "gloo-mesh-mgmt-server.gloo-mesh";
inline constexpr size_t kMaxValuesFileBytes = 1024 * 1024;

struct TokenSecretValues {
  std::string key = "token";
  std::string name = "relay-identity-token-secret";
  std::string ns;  // empty: the release namespace (--namespace)

  // The namespace the token secret is in: tokenSecret.namespace, or `release_ns`.
  std::string Namespace(const std::string& release_ns) const { return ns.empty() ? release_ns : ns; }
};

// glooMgmtServer.relay.state (relay extension): where the server keeps its state.
struct StateValues {
  std::string backend = "local";              // backend: local or etcd
  std::vector<std::string> etcd_endpoints;    // etcd.endpoints: host:port, a list or comma-separated
  std::string etcd_ca_file;                   // etcd.caFile
  std::string etcd_cert_file;                 // etcd.certFile
  std::string etcd_key_file;                  // etcd.keyFile
  std::string encryption_key_file;            // encryptionKeyFile
  bool plaintext_secrets = false;             // plaintextSecrets
};

// glooMgmtServer.relay
struct MgmtServerValues {
  bool disable_ca = false;
  bool disable_ca_cert_generation = false;
  bool disable_token_generation = false;
  bool push_rbac = true;
  std::string root_tls_secret = "relay-root-tls-secret";        // rootTlsSecret.name (relay extension)
  std::string signing_tls_secret = "relay-tls-signing-secret";  // signingTlsSecret.name
  std::string tls_secret = "relay-server-tls-secret";           // tlsSecret.name
  TokenSecretValues token_secret;                               // tokenSecret.*
  absl::Duration client_cert_ttl = absl::Hours(24 * 30);        // clientCertTtl (relay extension)
  StateValues state;                                            // state.* (relay extension)
};

// glooAgent.relay (read by the agent and the rotator)
struct AgentValues {
  std::string authority = kDefaultAuthority;
  std::string client_tls_secret = "relay-client-tls-secret";  // clientTlsSecret.name
  double client_tls_secret_rotation_grace_period_ratio = 0.5;
  std::string root_tls_secret = "relay-root-tls-secret";  // rootTlsSecret.name
  // host:port, or several comma-separated (replicas); empty: not set.
  std::string server_address;
  TokenSecretValues token_secret;                         // tokenSecret.*
  std::string cluster;                                    // empty: not set
};

// `file_name` only labels errors. An empty document gives the defaults.
absl::StatusOr<MgmtServerValues> ParseMgmtServerValues(absl::string_view yaml,
                                                       absl::string_view file_name);
absl::StatusOr<AgentValues> ParseAgentValues(absl::string_view yaml, absl::string_view file_name);

// Read `path` (empty: defaults, no file).
absl::StatusOr<MgmtServerValues> LoadMgmtServerValues(const std::string& path);
absl::StatusOr<AgentValues> LoadAgentValues(const std::string& path);

}  // namespace relay::config

#endif  // RELAY_CONFIG_VALUES_H_
