#include "common/grpc_tls.h"

#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace relay::grpc_tls {
namespace {

using ::grpc::experimental::FileWatcherCertificateProvider;
using ::grpc::experimental::HostNameCertificateVerifier;
using ::grpc::experimental::IdentityKeyCertPair;
using ::grpc::experimental::StaticDataCertificateProvider;
using ::grpc::experimental::TlsChannelCredentialsOptions;
using ::grpc::experimental::TlsServerCredentialsOptions;

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(
    std::shared_ptr<StaticDataCertificateProvider> provider, bool with_identity) {
  TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::move(provider));
  options.watch_root_certs();
  if (with_identity) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<HostNameCertificateVerifier>());
  options.set_check_call_host(true);
  return grpc::experimental::TlsCredentials(options);
}

std::string Property(const grpc::AuthContext& auth, const char* name) {
  std::vector<grpc::string_ref> values = auth.FindPropertyValues(name);
  return values.empty() ? "" : std::string(values.front().data(), values.front().size());
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> RelayServerCredentials(const std::string& key_path,
                                                                const std::string& chain_path,
                                                                const std::string& root_path,
                                                                unsigned refresh_seconds) {
  auto provider = std::make_shared<FileWatcherCertificateProvider>(key_path, chain_path, root_path,
                                                                   refresh_seconds);
  TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ServerAuthCredentials(const std::string& root_pem) {
  return ClientCredentials(std::make_shared<StaticDataCertificateProvider>(root_pem), false);
}

std::shared_ptr<grpc::ChannelCredentials> MutualTlsCredentials(const std::string& root_pem,
                                                               const std::string& key_pem,
                                                               const std::string& chain_pem) {
  std::vector<IdentityKeyCertPair> identity = {{key_pem, chain_pem}};
  return ClientCredentials(std::make_shared<StaticDataCertificateProvider>(root_pem, identity),
                           true);
}

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             const std::string& authority) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(authority);
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  // Reconnects are the agent's business (backoff with jitter); keep gRPC's own short.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 4 * 1024 * 1024);
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

Peer PeerOf(const grpc::ServerContextBase& context) {
  Peer peer;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return peer;
  peer.authenticated = true;
  for (const grpc::string_ref& name : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    peer.dns_names.emplace_back(name.data(), name.size());
  }
  peer.certificate_pem = Property(*auth, GRPC_X509_PEM_CERT_PROPERTY_NAME);
  peer.chain_pem = Property(*auth, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
  return peer;
}

}  // namespace relay::grpc_tls
