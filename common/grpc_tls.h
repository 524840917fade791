#ifndef RELAY_COMMON_GRPC_TLS_H_
#define RELAY_COMMON_GRPC_TLS_H_

// Every grpc::experimental TLS call lives here: the experimental API changes between
// gRPC releases, and the churn should stay in one file.

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace relay::grpc_tls {

// Relay port credentials. A client certificate is requested and verified when one is
// presented (GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY), so Register works before
// an agent has a certificate and each method checks the peer itself. The server's key
// and chain and the client root bundle are re-read from these files when they change
// (the kubelet layout swaps them through ..data), so a renewed server certificate is
// served without a restart.
std::shared_ptr<grpc::ServerCredentials> RelayServerCredentials(const std::string& key_path,
                                                                const std::string& chain_path,
                                                                const std::string& root_path,
                                                                unsigned refresh_seconds = 1);

// The same relay port credentials from PEM held in memory (no reload): for servers in
// tests, whose state lives in memory.
std::shared_ptr<grpc::ServerCredentials> RelayServerCredentialsFromPem(const std::string& key_pem,
                                                                       const std::string& chain_pem,
                                                                       const std::string& root_pem);

// Makes every TLS server context this process creates afterwards choose the cipher by
// its own order (gRPC's list holds only AEAD suites with ECDHE; testssl asks for a
// server order anyway) and issue no session tickets, TLS 1.3 (NumTickets 0) or TLS 1.2
// (RFC 5077: SSL_OP_NO_TICKET). Agents never resume a session (a restarted server would
// not know its tickets anyway), and each of OpenSSL's two default TLS 1.3 tickets costs
// both ends a copy of the session that re-decodes the client certificate: ~5% of the
// server's CPU per agent connect, and more on the agent. A TLS 1.2 ticket is the
// session's master secret sealed with a key that lives as long as gRPC's SSL_CTX:
// whoever reads that key from the server's memory decrypts every TLS 1.2 session it
// sealed, which undoes ECDHE's forward secrecy for no gain here. gRPC 1.51 offers no
// hook on its SSL_CTX, so this goes through OpenSSL's configuration ("system_default" of
// the ssl_conf module). Call before building the gRPC server; safe to call more than once.
absl::Status ApplyServerTlsPolicy();

// Server-authenticated TLS (Register): the server must chain to `root_pem` and name
// the channel's authority.
std::shared_ptr<grpc::ChannelCredentials> ServerAuthCredentials(const std::string& root_pem);

// Mutual TLS with a client key and chain held in memory.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsCredentials(const std::string& root_pem,
                                                               const std::string& key_pem,
                                                               const std::string& chain_pem);

// The channel arguments of every agent-side channel: SNI and checked host `authority`,
// and short gRPC reconnect backoff (200 ms to 2 s) because reconnecting with jitter is
// the agent's business (common/backoff.h). Shared with the fleet benchmark so it
// reconnects as agents do.
grpc::ChannelArguments AgentChannelArguments(const std::string& authority);

// A channel to `address` that expects the server certificate to name `authority` (the
// SNI and the host that is checked), as the mesh's agents do. `address` may name
// several servers (replicas): see ChannelTarget.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             const std::string& authority);

// The gRPC target for `address`: "host:port", or several separated by commas. A single
// IP literal stays as it is. Otherwise every host is resolved (getaddrinfo) and all the
// addresses are shuffled into one "ipv4:a:p,b:p" (or "ipv6:") target: gRPC's
// pick_first then connects to a random replica and, when it refuses, tries the others
// in turn; each new channel shuffles again, so agents spread over the replicas and a
// DNS name with several records works like a list. IPv4 addresses are used when a name
// has both kinds (one target holds one kind). A host that does not resolve is left to
// gRPC's resolver, which reports it.
std::string ChannelTarget(const std::string& address);

// What the TLS handshake established about the caller.
struct Peer {
  bool authenticated = false;         // a client certificate was presented and verified
  std::vector<std::string> dns_names;  // its DNS SANs
  std::string certificate_pem;        // its leaf
  std::string chain_pem;              // leaf + intermediates as presented
};
Peer PeerOf(const grpc::ServerContextBase& context);

}  // namespace relay::grpc_tls

#endif  // RELAY_COMMON_GRPC_TLS_H_
