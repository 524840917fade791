// Bring-your-own PKI: client certificates (disableCa) and root + intermediate
// (disableCaCertGeneration), all made with the openssl command line.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "e2e/harness.h"
#include "e2e/openssl_pki.h"
#include "e2e/relay_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::e2e {
namespace {

using ::relay::testing::StatusIs;
using ::testing::HasSubstr;

class ByoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("byo");
    pki_ = std::make_unique<OpensslPki>(dir_ + "/pki");
    std::filesystem::create_directories(dir_ + "/pki");
    std::string error;
    ASSERT_TRUE(pki_->MakeRoot("byo-root", &error)) << error;
    ASSERT_TRUE(pki_->MakeIntermediate("byo-intermediate", "byo-root", &error)) << error;
  }

  std::string dir_;
  std::unique_ptr<OpensslPki> pki_;
};

// 6. disableCa: the server signs nothing and accepts client certificates that chain to
// the configured root; a certificate for one cluster cannot act as another.
TEST_F(ByoTest, DisableCaAcceptsOperatorMadeClientCertificatesButNoImpersonation) {
  std::string error;
  ASSERT_TRUE(pki_->MakeServer("server", "byo-intermediate", kAuthority, &error)) << error;
  ASSERT_TRUE(pki_->MakeClient("east", "byo-intermediate", "east", &error)) << error;
  ASSERT_TRUE(pki_->MakeClient("west", "byo-intermediate", "west", &error)) << error;
  std::string root = pki_->Pem("byo-root.crt");
  std::string intermediate = pki_->Pem("byo-intermediate.crt");

  std::string mgmt = dir_ + "/mgmt";
  WritePlainSecret(mgmt, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(mgmt, "relay-server-tls-secret",
                   {{"tls.crt", pki_->Pem("server.crt") + intermediate},
                    {"tls.key", pki_->Pem("server.key")},
                    {"ca.crt", root}});
  WriteFile(dir_ + "/values.yaml", "glooMgmtServer:\n  relay:\n    disableCa: true\n");
  ServerUnderTest server(mgmt, {"--values=" + dir_ + "/values.yaml"});
  ASSERT_TRUE(server.Start(&error)) << error;
  // It made no CA and no token of its own.
  EXPECT_EQ(SecretFile(mgmt, "relay-tls-signing-secret", "tls.key"), "");
  EXPECT_EQ(SecretFile(mgmt, "relay-identity-token-secret", "token"), "");

  std::string store = dir_ + "/east";
  WritePlainSecret(store, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(store, "relay-client-tls-secret",
                   {{"tls.crt", pki_->Pem("east.crt") + intermediate},
                    {"tls.key", pki_->Pem("east.key")},
                    {"ca.crt", root}});
  AgentUnderTest agent("east", store, server.address());
  agent.Start();
  ASSERT_TRUE(agent.WaitConnected(absl::Seconds(20))) << agent.Log() << server.Log();
  EXPECT_THAT(server.Metrics(), HasSubstr("relay_push_clients_connected{cluster=\"east\"} 1"));

  // west's certificate, claiming to be east, is refused; east stays connected.
  auto west_channel = MutualTlsChannel(server.address(), root, pki_->Pem("west.key"),
                                       pki_->Pem("west.crt") + intermediate);
  ConnectOutcome impersonation = ConnectWithHello(west_channel, "east");
  EXPECT_THAT(impersonation.status, StatusIs(absl::StatusCode::kPermissionDenied))
      << impersonation.status.error_message();
  EXPECT_TRUE(impersonation.first.has_close());
  EXPECT_THAT(impersonation.first.close().reason(), HasSubstr("the client certificate is for \"west\""));
  EXPECT_THAT(server.Metrics(), HasSubstr("relay_push_clients_connected{cluster=\"east\"} 1"));

  // An agent given west's certificate but told it is east refuses to use it.
  std::string wrong = dir_ + "/wrong";
  WritePlainSecret(wrong, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(wrong, "relay-client-tls-secret",
                   {{"tls.crt", pki_->Pem("west.crt") + intermediate}, {"tls.key", pki_->Pem("west.key")}});
  CommandResult refused = RunCommand({AgentBinary(), "--cluster=east", "--secrets_dir=" + wrong,
                                      "--server_address=" + server.address()});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.output, HasSubstr("not for cluster \"east\""));

  // With disableCa, Register is refused with FAILED_PRECONDITION.
  auto stub = relay::v1::Registration::NewStub(ServerAuthChannel(server.address(), root));
  grpc::ClientContext context;
  SetDeadline(&context);
  context.AddMetadata("authorization", "Bearer anything");
  relay::v1::RegisterRequest request;
  request.set_cluster("north");
  relay::v1::CertificateResponse response;
  grpc::Status status = stub->Register(&context, request, &response);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(status.error_message(), HasSubstr("disableCa"));
}

// 7. disableCaCertGeneration: root and intermediate are the operator's; the server
// issues under them.
TEST_F(ByoTest, DisableCaCertGenerationIssuesUnderTheOperatorsIntermediate) {
  std::string root = pki_->Pem("byo-root.crt");
  std::string mgmt = dir_ + "/mgmt";
  WriteFile(dir_ + "/values.yaml", "glooMgmtServer:\n  relay:\n    disableCaCertGeneration: true\n");

  // Without the CA secrets the server refuses to start and says what to create.
  ServerUnderTest missing(dir_ + "/empty", {"--values=" + dir_ + "/values.yaml"});
  std::string error;
  EXPECT_FALSE(missing.Start(&error));
  EXPECT_THAT(error, HasSubstr("relay-root-tls-secret does not exist and disableCaCertGeneration is set"));

  WritePlainSecret(mgmt, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(mgmt, "relay-tls-signing-secret",
                   {{"tls.crt", pki_->Pem("byo-intermediate.crt")},
                    {"tls.key", pki_->Pem("byo-intermediate.key")},
                    {"ca.crt", root}});
  ServerUnderTest server(mgmt, {"--values=" + dir_ + "/values.yaml"});
  ASSERT_TRUE(server.Start(&error)) << error;

  std::string store = dir_ + "/east";
  ASSERT_EQ(server.Relayctl({"register", "--cluster=east", "--secrets_dir=" + store}).exit_code, 0);
  AgentUnderTest agent("east", store, server.address());
  agent.Start();
  ASSERT_TRUE(agent.WaitConnected(absl::Seconds(20))) << agent.Log();

  WriteFile(dir_ + "/chain.pem", agent.SecretKey("relay-client-tls-secret", "tls.crt"));
  CommandResult verify = RunCommand({"openssl", "verify", "-purpose", "sslclient", "-CAfile",
                                     pki_->Path("byo-root.crt"), "-untrusted", dir_ + "/chain.pem",
                                     dir_ + "/chain.pem"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  CommandResult issuer = RunCommand({"openssl", "x509", "-in", dir_ + "/chain.pem", "-noout", "-issuer"});
  EXPECT_THAT(issuer.output, HasSubstr("CN = byo-intermediate"));
  // The server certificate is under the operator's intermediate too.
  WriteFile(dir_ + "/server.pem", SecretFile(mgmt, "relay-server-tls-secret", "tls.crt"));
  CommandResult server_issuer = RunCommand({"openssl", "x509", "-in", dir_ + "/server.pem", "-noout", "-issuer"});
  EXPECT_THAT(server_issuer.output, HasSubstr("CN = byo-intermediate"));

  // A broken intermediate key stops start-up, naming the secret and the key.
  std::string broken = dir_ + "/broken";
  WritePlainSecret(broken, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(broken, "relay-tls-signing-secret",
                   {{"tls.crt", pki_->Pem("byo-intermediate.crt")},
                    {"tls.key", pki_->Pem("byo-root.key")},
                    {"ca.crt", root}});
  ServerUnderTest bad(broken, {"--values=" + dir_ + "/values.yaml"});
  EXPECT_FALSE(bad.Start(&error));
  EXPECT_THAT(error, HasSubstr("secret gloo-mesh/relay-tls-signing-secret key tls.key"));
  EXPECT_THAT(error, HasSubstr("does not match"));
}

// disableCaCertGeneration and a root whose key is not here: the operator stages the next
// intermediate (relayctl ca stage) and it takes over as a rotation would; one under
// another root is refused.
TEST_F(ByoTest, AStagedIntermediateTakesOverUnderTheOperatorsRoot) {
  std::string root = pki_->Pem("byo-root.crt");
  std::string mgmt = dir_ + "/mgmt";
  WriteFile(dir_ + "/values.yaml", "glooMgmtServer:\n  relay:\n    disableCaCertGeneration: true\n");
  WritePlainSecret(mgmt, "relay-root-tls-secret", {{"ca.crt", root}});
  WritePlainSecret(mgmt, "relay-tls-signing-secret",
                   {{"tls.crt", pki_->Pem("byo-intermediate.crt")},
                    {"tls.key", pki_->Pem("byo-intermediate.key")},
                    {"ca.crt", root}});
  ServerUnderTest server(mgmt, {"--values=" + dir_ + "/values.yaml", "--client_cert_ttl=4s"});
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(server, dir_, "east", {"--rotation=builtin"});
  auto issuer = [&] {
    WriteFile(dir_ + "/chain.pem", agent->SecretKey("relay-client-tls-secret", "tls.crt"));
    return RunCommand({"openssl", "x509", "-in", dir_ + "/chain.pem", "-noout", "-issuer"}).output;
  };
  EXPECT_THAT(issuer(), HasSubstr("CN = byo-intermediate\n"));

  // Without the root key the server cannot make one itself, and says what to do.
  CommandResult rotate = server.Relayctl({"ca", "rotate-intermediate"});
  EXPECT_NE(rotate.exit_code, 0);
  EXPECT_THAT(rotate.output, HasSubstr("no tls.key"));

  ASSERT_TRUE(pki_->MakeIntermediate("byo-intermediate-2", "byo-root", &error)) << error;
  CommandResult staged = server.Relayctl({"ca", "stage", "--cert_file=" + pki_->Path("byo-intermediate-2.crt"),
                                          "--key_file=" + pki_->Path("byo-intermediate-2.key")});
  ASSERT_EQ(staged.exit_code, 0) << staged.output;
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(issuer(), "CN = byo-intermediate-2"); }, kPatience))
      << agent->Log();
  EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_heartbeats_unanswered_total"), 0) << agent->Log();
  EXPECT_THAT(server.Relayctl({"ca", "status"}).output, HasSubstr("retired-intermediate"));
  // The secret now holds it, with the previous one retired: a restart keeps both.
  EXPECT_EQ(SecretFile(mgmt, "relay-tls-signing-secret", "tls.crt"), pki_->Pem("byo-intermediate-2.crt"));

  ASSERT_TRUE(pki_->MakeRoot("other-root", &error)) << error;
  ASSERT_TRUE(pki_->MakeIntermediate("other-intermediate", "other-root", &error)) << error;
  CommandResult foreign = server.Relayctl({"ca", "stage", "--cert_file=" + pki_->Path("other-intermediate.crt"),
                                           "--key_file=" + pki_->Path("other-intermediate.key")});
  EXPECT_NE(foreign.exit_code, 0);
  EXPECT_THAT(foreign.output, HasSubstr("does not chain to this server's root"));
  EXPECT_EQ(SecretFile(mgmt, "relay-tls-signing-secret", "tls.crt"), pki_->Pem("byo-intermediate-2.crt"));
}

}  // namespace
}  // namespace relay::e2e
