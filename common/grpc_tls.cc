#include "common/grpc_tls.h"

#include <openssl/conf.h>
#include <openssl/err.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/base/call_once.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

namespace {

// host:port → host and port, with [v6] brackets removed.
bool SplitHostPort(absl::string_view address, std::string* host, std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  absl::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  *port = std::string(address.substr(colon + 1));
  return !host->empty() && !port->empty();
}

bool IsIpLiteral(const std::string& host) {
  in6_addr any;
  return inet_pton(AF_INET, host.c_str(), &any) == 1 || inet_pton(AF_INET6, host.c_str(), &any) == 1;
}

}  // namespace

std::string ChannelTarget(const std::string& address) {
  std::vector<std::string> entries = absl::StrSplit(address, ',', absl::SkipWhitespace());
  std::string host, port;
  if (entries.size() == 1 && SplitHostPort(entries[0], &host, &port) && IsIpLiteral(host)) return entries[0];
  std::vector<std::string> v4, v6;
  for (const std::string& entry : entries) {
    if (!SplitHostPort(absl::StripAsciiWhitespace(entry), &host, &port)) return address;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return address;
    for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      if (at->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(at->ai_addr)->sin_addr, text, sizeof(text));
        v4.push_back(absl::StrCat(text, ":", port));
      } else if (at->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(at->ai_addr)->sin6_addr, text, sizeof(text));
        v6.push_back(absl::StrCat("[", text, "]:", port));
      }
    }
    freeaddrinfo(found);
  }
  std::vector<std::string>& chosen = v4.empty() ? v6 : v4;
  if (chosen.empty()) return address;
  std::sort(chosen.begin(), chosen.end());
  chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  absl::BitGen random;
  std::shuffle(chosen.begin(), chosen.end(), random);
  return absl::StrCat(v4.empty() ? "ipv6:" : "ipv4:", absl::StrJoin(chosen, ","));
}

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             const std::string& authority) {
  return grpc::CreateCustomChannel(ChannelTarget(address), std::move(credentials), AgentChannelArguments(authority));
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

absl::Status ApplyServerTlsPolicy() {
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
        "NumTickets = 0\n"
        "Options = -SessionTicket, ServerPreference\n";
    OPENSSL_load_builtin_modules();
    CONF* conf = NCONF_new(nullptr);
    BIO* bio = BIO_new_mem_buf(kConfig, -1);
    long error_line = 0;
    bool ok = conf != nullptr && bio != nullptr && NCONF_load_bio(conf, bio, &error_line) == 1 &&
              CONF_modules_load(conf, "relay_openssl_conf", 0) == 1;
    BIO_free(bio);
    NCONF_free(conf);
    ERR_clear_error();
    if (!ok) *result = absl::InternalError("cannot configure OpenSSL's TLS defaults (no session tickets, the server's cipher order)");
  });
  return *result;
}

}  // namespace relay::grpc_tls
