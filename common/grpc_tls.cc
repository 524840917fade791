#include "common/grpc_tls.h"

#include <openssl/conf.h>
#include <openssl/err.h>

#include "absl/base/call_once.h"
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

std::shared_ptr<grpc::ServerCredentials> RelayServerCredentialsFromPem(const std::string& key_pem,
                                                                       const std::string& chain_pem,
                                                                       const std::string& root_pem) {
  std::vector<IdentityKeyCertPair> identity = {{key_pem, chain_pem}};
  auto provider = std::make_shared<StaticDataCertificateProvider>(root_pem, identity);
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

grpc::ChannelArguments AgentChannelArguments(const std::string& authority) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(authority);
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  // Reconnects are the agent's business (backoff with jitter); keep gRPC's own short.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 4 * 1024 * 1024);
  return args;
}

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             const std::string& authority) {
  return grpc::CreateCustomChannel(address, std::move(credentials), AgentChannelArguments(authority));
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

absl::Status IssueNoSessionTickets() {
  static absl::once_flag once;
  static absl::Status* result = new absl::Status();
  absl::call_once(once, [] {
    static constexpr char kConfig[] =
        "relay_openssl_conf = relay_init\n"
        "[relay_init]\n"
        "ssl_conf = relay_ssl\n"
        "[relay_ssl]\n"
        "system_default = relay_tls_defaults\n"
        "[relay_tls_defaults]\n"
        "NumTickets = 0\n";
    OPENSSL_load_builtin_modules();
    CONF* conf = NCONF_new(nullptr);
    BIO* bio = BIO_new_mem_buf(kConfig, -1);
    long error_line = 0;
    bool ok = conf != nullptr && bio != nullptr && NCONF_load_bio(conf, bio, &error_line) == 1 &&
              CONF_modules_load(conf, "relay_openssl_conf", 0) == 1;
    BIO_free(bio);
    NCONF_free(conf);
    ERR_clear_error();
    if (!ok) *result = absl::InternalError("cannot configure OpenSSL to issue no session tickets");
  });
  return *result;
}

}  // namespace relay::grpc_tls
