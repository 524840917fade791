#include "enrolment/client_credentials.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/grpc_tls.h"
#include "common/names.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "pki/ca.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tokens/identity_token.h"

namespace relay::enrolment {
namespace {

absl::Status InSecret(const std::string& ns, const std::string& name, absl::string_view key,
                      const absl::Status& status) {
  std::string where = absl::StrCat("secret ", ns, "/", name);
  if (!key.empty()) absl::StrAppend(&where, " key ", key);
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
}

}  // namespace

absl::StatusOr<WorkloadSettings> ResolveWorkloadSettings(
    const config::AgentValues& values, const std::string& ns, const std::string& cluster_flag,
    const std::string& server_address_flag, const std::string& authority_flag, double ratio_flag) {
  WorkloadSettings settings;
  settings.secrets.values = values;
  settings.secrets.ns = ns;
  settings.cluster = cluster_flag.empty() ? values.cluster : cluster_flag;
  if (settings.cluster.empty()) {
    return absl::InvalidArgumentError(
        "--cluster is required (or glooAgent.relay.cluster in --values): the name of this "
        "workload cluster");
  }
  RETURN_IF_ERROR(ValidateClusterName(settings.cluster));
  settings.server.address = !server_address_flag.empty() ? server_address_flag
                            : !values.server_address.empty() ? values.server_address
                                                              : "127.0.0.1:9900";
  settings.server.authority = authority_flag.empty() ? values.authority : authority_flag;
  settings.grace_period_ratio =
      ratio_flag == 0 ? values.client_tls_secret_rotation_grace_period_ratio : ratio_flag;
  if (!(settings.grace_period_ratio > 0 && settings.grace_period_ratio < 1)) {
    return absl::InvalidArgumentError("--grace_period_ratio must be strictly between 0 and 1 (e.g. 0.5)");
  }
  return settings;
}

absl::StatusOr<std::string> LoadRootBundle(secrets::SecretStore& store, const WorkloadSecrets& secrets) {
  const std::string& name = secrets.values.root_tls_secret;
  absl::StatusOr<secrets::SecretData> data = store.Get(secrets.ns, name);
  if (!data.ok()) return data.status();
  absl::StatusOr<std::string> bundle = secrets::GetKey(*data, secrets.ns, name, "ca.crt");
  if (!bundle.ok()) return bundle.status();
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> roots = pki::ParseCertificateChainPem(*bundle);
  if (!roots.ok()) return InSecret(secrets.ns, name, "ca.crt", roots.status());
  return bundle;
}

absl::StatusOr<ClientCredentials> CheckIssued(const std::string& cluster, std::string key_pem,
                                              std::string chain_pem, std::string root_pem,
                                              absl::Time now) {
  ClientCredentials credentials;
  credentials.cluster = cluster;
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> chain, pki::ParseCertificateChainPem(chain_pem));
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::ParsePrivateKeyPem(key_pem));
  RETURN_IF_ERROR(pki::CheckKeyMatchesCertificate(chain[0].get(), key.get()));
  ASSIGN_OR_RETURN(std::vector<pki::UniquePtr<X509>> roots, pki::ParseCertificateChainPem(root_pem));
  RETURN_IF_ERROR(pki::VerifyChain(chain[0].get(), pki::Borrow(chain), pki::Borrow(roots), now,
                                   pki::Purpose::kClientAuth));
  ASSIGN_OR_RETURN(credentials.leaf, pki::InspectCertificate(chain[0].get()));
  if (credentials.leaf.dns_names.size() != 1 || credentials.leaf.dns_names[0] != cluster) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the certificate is for \"", credentials.leaf.dns_names.empty() ? "" : credentials.leaf.dns_names[0],
        "\", not for cluster \"", cluster, "\""));
  }
  credentials.key_pem = std::move(key_pem);
  credentials.chain_pem = std::move(chain_pem);
  credentials.root_pem = std::move(root_pem);
  return credentials;
}

absl::StatusOr<ClientCredentials> LoadClientCredentials(secrets::SecretStore& store,
                                                        const WorkloadSecrets& secrets,
                                                        const std::string& cluster, absl::Time now) {
  const std::string& name = secrets.values.client_tls_secret;
  absl::StatusOr<secrets::SecretData> data = store.Get(secrets.ns, name);
  if (!data.ok()) return data.status();
  absl::StatusOr<std::string> chain = secrets::GetKey(*data, secrets.ns, name, "tls.crt");
  absl::StatusOr<std::string> key = secrets::GetKey(*data, secrets.ns, name, "tls.key");
  if (!chain.ok()) return chain.status();
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> root = LoadRootBundle(store, secrets);
  if (!root.ok()) {
    if (!absl::IsNotFound(root.status())) return root.status();
    root = secrets::GetKey(*data, secrets.ns, name, "ca.crt");
    if (!root.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no root certificate to check ", secrets.ns, "/", name, " against: add ca.crt to it or "
          "create ", secrets.values.root_tls_secret));
    }
  }
  absl::StatusOr<ClientCredentials> credentials =
      CheckIssued(cluster, *std::move(key), *std::move(chain), *std::move(root), now);
  if (!credentials.ok()) return InSecret(secrets.ns, name, "", credentials.status());
  return credentials;
}

ClientSecretState InspectClientSecret(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                                      const std::string& cluster) {
  ClientSecretState state;
  const std::string& name = secrets.values.client_tls_secret;
  absl::StatusOr<secrets::SecretData> data = store.Get(secrets.ns, name);
  if (absl::IsNotFound(data.status())) return state;
  auto unusable = [&](const absl::Status& status) {
    state.kind = ClientSecretState::kUnusable;
    state.problem = std::string(status.message());
    return state;
  };
  if (absl::IsUnavailable(data.status()) || absl::IsDeadlineExceeded(data.status())) {
    state.kind = ClientSecretState::kUnreadable;
    state.problem = std::string(data.status().message());
    return state;
  }
  if (!data.ok()) return unusable(data.status());
  // Checked as the agent would load it, at a moment inside the certificate's own
  // validity: an expired certificate is still this cluster's, to be replaced in time.
  absl::StatusOr<std::string> chain_pem = secrets::GetKey(*data, secrets.ns, name, "tls.crt");
  if (!chain_pem.ok()) return unusable(chain_pem.status());
  absl::StatusOr<std::vector<pki::UniquePtr<X509>>> chain = pki::ParseCertificateChainPem(*chain_pem);
  if (!chain.ok()) return unusable(InSecret(secrets.ns, name, "tls.crt", chain.status()));
  absl::StatusOr<pki::CertificateInfo> leaf = pki::InspectCertificate((*chain)[0].get());
  if (!leaf.ok()) return unusable(InSecret(secrets.ns, name, "tls.crt", leaf.status()));
  absl::Time inside = std::max(leaf->not_before, leaf->not_after - absl::Seconds(1));
  absl::StatusOr<ClientCredentials> loaded = LoadClientCredentials(store, secrets, cluster, inside);
  if (!loaded.ok()) return unusable(loaded.status());
  state.kind = ClientSecretState::kUsable;
  state.leaf = loaded->leaf;
  return state;
}

bool HasToken(secrets::SecretStore& store, const WorkloadSecrets& secrets) {
  return tokens::LoadToken(store, secrets.TokenNamespace(), secrets.values.token_secret.name,
                           secrets.values.token_secret.key)
      .ok();
}

absl::Status UpdateAgentState(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                              const std::map<std::string, std::string>& values) {
  absl::StatusOr<secrets::SecretData> state = store.Get(secrets.ns, kAgentStateSecret);
  if (!state.ok() && !absl::IsNotFound(state.status())) return state.status();
  secrets::SecretData data = state.ok() ? *std::move(state) : secrets::SecretData();
  for (const auto& [key, value] : values) data[key] = value;
  return store.Put(secrets.ns, kAgentStateSecret, data);
}

absl::Time RequestedRenewal(secrets::SecretStore& store, const WorkloadSecrets& secrets, const std::string& serial) {
  absl::StatusOr<secrets::SecretData> state = store.Get(secrets.ns, kAgentStateSecret);
  int64_t at = 0;
  if (!state.ok() || !state->count(kRenewSerialKey) || state->at(kRenewSerialKey) != serial ||
      !state->count(kRenewAtKey) || !absl::SimpleAtoi(state->at(kRenewAtKey), &at)) {
    return absl::InfiniteFuture();
  }
  return absl::FromUnixSeconds(at);
}

absl::Status WriteClientCredentials(secrets::SecretStore& store, const WorkloadSecrets& secrets,
                                    const ClientCredentials& credentials) {
  return store.Put(secrets.ns, secrets.values.client_tls_secret,
                   {{"tls.crt", credentials.chain_pem},
                    {"tls.key", credentials.key_pem},
                    {"ca.crt", credentials.root_pem}});
}

absl::StatusOr<ClientCredentials> SignLocally(secrets::SecretStore& store,
                                              const WorkloadSecrets& secrets,
                                              const std::string& cluster, absl::Duration lifetime,
                                              absl::Time now) {
  const std::string& name = secrets.values.root_tls_secret;
  ASSIGN_OR_RETURN(secrets::SecretData data, store.Get(secrets.ns, name));
  if (data.count("tls.key") == 0) {
    return absl::NotFoundError(absl::StrCat("secret ", secrets.ns, "/", name, " has no tls.key"));
  }
  std::string root_pem = data.count("ca.crt") ? data["ca.crt"] : "";
  std::string cert_pem = data.count("tls.crt") ? data["tls.crt"] : root_pem;
  absl::StatusOr<pki::UniquePtr<X509>> root = pki::ParseCertificatePem(cert_pem);
  if (!root.ok()) return InSecret(secrets.ns, name, "tls.crt", root.status());
  absl::StatusOr<pki::UniquePtr<EVP_PKEY>> root_key = pki::ParsePrivateKeyPem(data["tls.key"]);
  if (!root_key.ok()) return InSecret(secrets.ns, name, "tls.key", root_key.status());
  absl::StatusOr<std::unique_ptr<pki::Issuer>> issuer =
      pki::Issuer::Create(*std::move(root), *std::move(root_key), now);
  if (!issuer.ok()) return InSecret(secrets.ns, name, "", issuer.status());
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey());
  ASSIGN_OR_RETURN(pki::UniquePtr<X509> leaf,
                   (*issuer)->Issue(key.get(), pki::ClientSpec(cluster, now, lifetime)));
  ASSIGN_OR_RETURN(std::string leaf_pem, pki::CertificateToPem(leaf.get()));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));
  if (root_pem.empty()) root_pem = cert_pem;
  return CheckIssued(cluster, std::move(key_pem), std::move(leaf_pem), std::move(root_pem), now);
}

namespace {
constexpr char kCallFailurePayloadUrl[] = "type.relay.dev/call-failure";
}  // namespace

bool IsCallFailure(const absl::Status& status) {
  return status.GetPayload(kCallFailurePayloadUrl).has_value();
}

absl::Status ExplainRpcError(const grpc::Status& status, const ServerEndpoint& server,
                             const std::string& what, const grpc::ClientContext* context) {
  const std::string& message = status.error_message();
  std::string text = absl::StrCat(what, " failed: ");
  absl::Status explained;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    if (absl::StrContains(message, "Hostname Verification") ||
        absl::StrContains(message, "hostname")) {
      absl::StrAppend(&text, "the server at ", server.address, " does not present a certificate for "
                      "the authority \"", server.authority, "\": set --authority "
                      "(glooAgent.relay.authority) to a name the server certificate carries");
    } else if (absl::StrContains(message, "CERTIFICATE_VERIFY_FAILED") ||
               absl::StrContains(message, "certificate verify failed") ||
               absl::StrContains(message, "Handshake") || absl::StrContains(message, "handshake")) {
      absl::StrAppend(&text, "the server at ", server.address, " is not trusted: its certificate does "
                      "not verify against the root in relay-root-tls-secret ca.crt (a different root: "
                      "copy the management cluster's root with relayctl register; or clocks that differ: "
                      "check both with NTP)");
    } else {
      absl::StrAppend(&text, "cannot reach the management server at ", server.address,
                      " (check --server_address / glooAgent.relay.serverAddress)");
    }
    absl::StrAppend(&text, " [", message, "]");
    explained = absl::UnavailableError(text);
  } else {
    absl::StrAppend(&text, message);
    explained = absl::Status(static_cast<absl::StatusCode>(status.error_code()), text);
  }
  explained.SetPayload(kCallFailurePayloadUrl, absl::Cord("1"));
  if (context != nullptr) {
    const auto& trailers = context->GetServerTrailingMetadata();
    auto refusal = trailers.find(kRefusalMetadataKey);
    if (refusal != trailers.end()) {
      explained = WithRefusal(explained, absl::string_view(refusal->second.data(), refusal->second.size()));
    }
  }
  return explained;
}

absl::StatusOr<ClientCredentials> RegisterWithToken(secrets::SecretStore& store,
                                                    const WorkloadSecrets& secrets,
                                                    const std::string& cluster,
                                                    const ServerEndpoint& server, absl::Time now) {
  ASSIGN_OR_RETURN(std::string root_pem, LoadRootBundle(store, secrets));
  ASSIGN_OR_RETURN(std::string token,
                   tokens::LoadToken(store, secrets.TokenNamespace(), secrets.values.token_secret.name,
                                     secrets.values.token_secret.key));
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey());
  ASSIGN_OR_RETURN(std::string csr_pem, pki::CreateCsrPem(key.get(), cluster));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));

  auto channel = grpc_tls::CreateChannel(server.address, grpc_tls::ServerAuthCredentials(root_pem),
                                         server.authority);
  auto stub = relay::v1::Registration::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(server.timeout));
  context.set_wait_for_ready(false);
  context.AddMetadata("authorization", "Bearer " + token);
  relay::v1::RegisterRequest request;
  request.set_cluster(cluster);
  request.set_csr_pem(csr_pem);
  relay::v1::CertificateResponse response;
  grpc::Status status = stub->Register(&context, request, &response);
  if (!status.ok()) return ExplainRpcError(status, server, "Register", &context);
  absl::StatusOr<ClientCredentials> credentials =
      CheckIssued(cluster, std::move(key_pem), response.certificate_chain_pem(), root_pem, now);
  if (!credentials.ok()) {
    return absl::InternalError(absl::StrCat("the server's answer to Register is not usable: ",
                                            credentials.status().message()));
  }
  return credentials;
}

absl::StatusOr<ClientCredentials> Renew(const ClientCredentials& current,
                                        const ServerEndpoint& server, absl::Time now) {
  ASSIGN_OR_RETURN(pki::UniquePtr<EVP_PKEY> key, pki::GenerateKey());
  ASSIGN_OR_RETURN(std::string csr_pem, pki::CreateCsrPem(key.get(), current.cluster));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(key.get()));
  auto channel = grpc_tls::CreateChannel(
      server.address,
      grpc_tls::MutualTlsCredentials(current.root_pem, current.key_pem, current.chain_pem),
      server.authority);
  auto stub = relay::v1::Registration::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(server.timeout));
  relay::v1::RenewRequest request;
  request.set_csr_pem(csr_pem);
  relay::v1::CertificateResponse response;
  grpc::Status status = stub->Renew(&context, request, &response);
  if (!status.ok()) return ExplainRpcError(status, server, "Renew", &context);
  absl::StatusOr<ClientCredentials> renewed = CheckIssued(
      current.cluster, std::move(key_pem), response.certificate_chain_pem(), current.root_pem, now);
  if (!renewed.ok()) {
    return absl::InternalError(absl::StrCat("the server's answer to Renew is not usable: ",
                                            renewed.status().message()));
  }
  // Newer means issued for the key made above, which CheckIssued has matched; not a later
  // expiry (a lowered clientCertTtl gives an earlier one).
  if (renewed->leaf.serial_hex == current.leaf.serial_hex) {
    return absl::InternalError("the server answered Renew with the current certificate");
  }
  return renewed;
}

}  // namespace relay::enrolment
