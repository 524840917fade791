#ifndef RELAY_ENROLMENT_CLIENT_CREDENTIALS_H_
#define RELAY_ENROLMENT_CLIENT_CREDENTIALS_H_

// Enrolment, the workload side's certificate material: reading and checking
// relay-client-tls-secret, signing one locally with the root's key, and obtaining one
// from the management server with the identity token (Register) or with the current
// certificate (Renew). Shared by the agent and the rotator, so its own package: both
// depend on it, and neither on the other's.

#include <memory>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/values.h"
#include "grpcpp/grpcpp.h"
#include "pki/certificate.h"
#include "secrets/secret_store.h"

namespace relay::enrolment {

// Where the workload side's secrets live (glooAgent.relay.* names).
struct WorkloadSecrets {
  std::string ns = config::kDefaultNamespace;
  config::AgentValues values;

  std::string TokenNamespace() const { return values.token_secret.Namespace(ns); }
};

struct ClientCredentials {
  std::string cluster;
  std::string key_pem;
  std::string chain_pem;  // leaf first
  std::string root_pem;   // trust anchors for the server
  pki::CertificateInfo leaf;
};

// The root bundle that authenticates the server: relay-root-tls-secret ca.crt.
absl::StatusOr<std::string> LoadRootBundle(secrets::SecretStore& store, const WorkloadSecrets& secrets);

// Reads relay-client-tls-secret and checks that the key matches, the chain reaches the
// root bundle (relay-root-tls-secret ca.crt, else the secret's own ca.crt), the leaf
// names `cluster` and is valid at `now`. NOT_FOUND when the secret does not exist.
absl::StatusOr<ClientCredentials> LoadClientCredentials(secrets::SecretStore& store,
                                                        const WorkloadSecrets& secrets,
                                                        const std::string& cluster, absl::Time now);

// relay-client-tls-secret as the rotator sees it: missing, usable (key matches, names
// the cluster, chains to the root; it may have expired), or unusable, and why.
struct ClientSecretState {
  // kUnreadable: the store cannot be reached now (an apiserver outage); the secret may
  // be fine, and is to be read again later, never replaced for it.
  enum Kind { kMissing, kUsable, kUnusable, kUnreadable } kind = kMissing;
  pki::CertificateInfo leaf;  // when usable
  std::string problem;        // when unusable or unreadable
};
ClientSecretState InspectClientSecret(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                                      const std::string& cluster);

// True when the token secret holds a non-empty token.
bool HasToken(secrets::SecretStore& store, const WorkloadSecrets& secrets);

// The agent's own state secret: the last snapshot version applied, and a renewal the
// server asked for (RenewNow during a root rotation's switch), which the rotator, sidecar
// or built in, carries out.
inline constexpr char kAgentStateSecret[] = "relay-agent-state";
inline constexpr char kAckedVersionKey[] = "acked_version";
inline constexpr char kRenewSerialKey[] = "renew_serial";  // the certificate to replace
inline constexpr char kRenewAtKey[] = "renew_at";          // by then (unix seconds)

// Sets `values` in the agent state secret, keeping its other keys.
absl::Status UpdateAgentState(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                              const std::map<std::string, std::string>& values);

// When the server asked for the certificate with `serial` to be replaced;
// InfiniteFuture when it did not (or asked about another certificate).
absl::Time RequestedRenewal(secrets::SecretStore& store, const WorkloadSecrets& secrets, const std::string& serial);

// Writes relay-client-tls-secret (tls.crt, tls.key, ca.crt) in one atomic swap.
absl::Status WriteClientCredentials(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                                    const ClientCredentials& credentials);

// Signs a client certificate with relay-root-tls-secret's tls.key (no token, no call).
// NOT_FOUND when the root secret carries no tls.key.
absl::StatusOr<ClientCredentials> SignLocally(secrets::SecretStore& store,
                                              const WorkloadSecrets& secrets,
                                              const std::string& cluster, absl::Duration lifetime,
                                              absl::Time now);

struct ServerEndpoint {
  std::string address;    // host:port
  std::string authority;  // name the server certificate must carry
  absl::Duration timeout = absl::Seconds(10);
};

// What the agent and the rotator both take from flags over glooAgent.relay values.
struct WorkloadSettings {
  std::string cluster;
  WorkloadSecrets secrets;
  ServerEndpoint server;
  double grace_period_ratio = 0.5;
};

// A flag wins when set (non-empty, or non-zero for the ratio); then the value; then the
// default (server 127.0.0.1:9900). INVALID_ARGUMENT, saying which flag, when the
// cluster is missing or not a DNS label, or the ratio is outside (0, 1).
absl::StatusOr<WorkloadSettings> ResolveWorkloadSettings(
    const config::AgentValues& values, const std::string& ns, const std::string& cluster_flag,
    const std::string& server_address_flag, const std::string& authority_flag, double ratio_flag);

// Makes a key and CSR and calls Register with the identity token from the token secret.
// NOT_FOUND when there is no token.
absl::StatusOr<ClientCredentials> RegisterWithToken(secrets::SecretStore& store,
                                                    const WorkloadSecrets& secrets,
                                                    const std::string& cluster,
                                                    const ServerEndpoint& server, absl::Time now);

// Makes a new key and CSR and calls Renew over mTLS with `current`; checks the answer
// (key matches, chains to the root, same identity, valid now). Its expiry may be earlier
// than the current one's (the server's clientCertTtl was lowered): it is newer because
// it certifies the key made for this call.
absl::StatusOr<ClientCredentials> Renew(const ClientCredentials& current,
                                        const ServerEndpoint& server, absl::Time now);

// Verifies a certificate answer against the key that asked for it.
absl::StatusOr<ClientCredentials> CheckIssued(const std::string& cluster, std::string key_pem,
                                              std::string chain_pem, std::string root_pem,
                                              absl::Time now);

// An RPC failure in words an operator can act on (untrusted server, wrong authority,
// unreachable, refused token...). With the call's `context`, the server's refusal kind
// (common/refusal.h) travels along as a payload. Every such status is marked as a
// failure of the call (IsCallFailure), as opposed to a problem on this side.
absl::Status ExplainRpcError(const grpc::Status& status, const ServerEndpoint& server,
                             const std::string& what, const grpc::ClientContext* context = nullptr);

// True when `status` says a call to the server failed or was refused, rather than that
// something is missing or broken on this side: worth trying again later.
bool IsCallFailure(const absl::Status& status);

}  // namespace relay::enrolment

#endif  // RELAY_ENROLMENT_CLIENT_CREDENTIALS_H_
