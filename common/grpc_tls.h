#ifndef RELAY_COMMON_GRPC_TLS_H_
#define RELAY_COMMON_GRPC_TLS_H_

// Every grpc::experimental TLS call lives here: the experimental API changes between
// gRPC releases, and the churn should stay in one file.

#include <memory>
#include <string>
#include <vector>

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

// Server-authenticated TLS (Register): the server must chain to `root_pem` and name
// the channel's authority.
std::shared_ptr<grpc::ChannelCredentials> ServerAuthCredentials(const std::string& root_pem);

// Mutual TLS with a client key and chain held in memory.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsCredentials(const std::string& root_pem,
                                                               const std::string& key_pem,
                                                               const std::string& chain_pem);

// A channel to `address` that expects the server certificate to name `authority` (the
// SNI and the host that is checked), as the mesh's agents do.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             const std::string& authority);

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
