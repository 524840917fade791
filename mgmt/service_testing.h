#ifndef RELAY_MGMT_SERVICE_TESTING_H_
#define RELAY_MGMT_SERVICE_TESTING_H_

// For unit tests of the management server's services: the services in this process,
// on the in-memory state backend, with a CA made at start and real TLS on 127.0.0.1
// (no files, no other process).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "mgmt/admin_service.h"
#include "mgmt/caller_identity.h"
#include "mgmt/core.h"
#include "mgmt/registration_service.h"
#include "mgmt/relay_hub.h"

namespace relay::mgmt::testing {

class ServicesUnderTest {
 public:
  static std::unique_ptr<ServicesUnderTest> Start(ServerOptions options = {});
  ~ServicesUnderTest();

  Core& core() { return *core_; }
  RelayHub& hub() { return *hub_; }
  AdminService& admin() { return *admin_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& root_pem() const { return root_pem_; }
  const std::string& token() const { return token_; }

  // Server-authenticated TLS (Register), and mutual TLS with a client's key and chain.
  std::shared_ptr<grpc::Channel> ServerAuthChannel() const;
  std::shared_ptr<grpc::Channel> MutualTlsChannel(const std::string& key_pem, const std::string& chain_pem) const;

  struct Credentials {
    std::string key_pem;
    std::string chain_pem;
    std::string serial;
  };
  // Register: a fresh key and a CSR for `csr_cluster` (default: `cluster`), with
  // `token` (default: the shared token). The status, trailing metadata and all.
  struct Registered {
    grpc::Status status;
    Credentials credentials;
    std::string refusal;  // trailing metadata relay-refusal
  };
  Registered Register(const std::string& cluster, const std::string& token = "", const std::string& csr_cluster = "");
  // Renew with `current` and a CSR for `csr_cluster` (default: current's cluster).
  Registered Renew(const Credentials& current, const std::string& csr_cluster);

 private:
  ServicesUnderTest() = default;

  std::unique_ptr<Core> core_;
  std::unique_ptr<RelayHub> hub_;
  std::unique_ptr<CallerIdentifier> identifier_;
  std::unique_ptr<RelayService> relay_;
  std::unique_ptr<RegistrationService> registration_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string root_pem_;
  std::string token_;
};

}  // namespace relay::mgmt::testing

#endif  // RELAY_MGMT_SERVICE_TESTING_H_
