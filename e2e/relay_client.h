#ifndef RELAY_E2E_RELAY_CLIENT_H_
#define RELAY_E2E_RELAY_CLIENT_H_

// A hand-driven relay client for tests that must do what no well-behaved agent does
// (claim another cluster, connect without a certificate, send bad requests).

#include <memory>
#include <string>

#include "api/relay/v1/relay.grpc.pb.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "grpcpp/grpcpp.h"

namespace relay::e2e {

inline constexpr const char* kAuthority = config::kDefaultAuthority;

inline std::shared_ptr<grpc::Channel> ServerAuthChannel(const std::string& address,
                                                        const std::string& root_pem) {
  return grpc_tls::CreateChannel(address, grpc_tls::ServerAuthCredentials(root_pem), kAuthority);
}

inline std::shared_ptr<grpc::Channel> MutualTlsChannel(const std::string& address, const std::string& root_pem,
                                                       const std::string& key_pem,
                                                       const std::string& chain_pem) {
  return grpc_tls::CreateChannel(address, grpc_tls::MutualTlsCredentials(root_pem, key_pem, chain_pem),
                                 kAuthority);
}

inline void SetDeadline(grpc::ClientContext* context, int seconds = 10) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// Opens Connect, sends Hello for `claimed_cluster`, and returns the first message (or
// none) and the final status.
struct ConnectOutcome {
  bool got_message = false;
  relay::v1::ServerMessage first;
  grpc::Status status;
};

inline ConnectOutcome ConnectWithHello(std::shared_ptr<grpc::Channel> channel,
                                       const std::string& claimed_cluster) {
  auto stub = relay::v1::Relay::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub->Connect(&context);
  relay::v1::AgentMessage hello;
  hello.mutable_hello()->set_cluster(claimed_cluster);
  stream->Write(hello);
  stream->WritesDone();
  ConnectOutcome outcome;
  relay::v1::ServerMessage message;
  while (stream->Read(&message)) {
    if (!outcome.got_message) {
      outcome.got_message = true;
      outcome.first = message;
    }
  }
  outcome.status = stream->Finish();
  return outcome;
}

}  // namespace relay::e2e

#endif  // RELAY_E2E_RELAY_CLIENT_H_
