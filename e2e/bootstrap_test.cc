// First contact: shared and single-use tokens, and the ways it must fail.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kClientSecret[] = "relay-client-tls-secret";

class BootstrapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("bootstrap");
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt");
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }

  std::string RootPem() const { return SecretFile(server_->secrets_dir(), "relay-root-tls-secret", "ca.crt"); }
  std::string Token() const {
    return SecretFile(server_->secrets_dir(), "relay-identity-token-secret", "token");
  }

  std::string dir_;
  std::unique_ptr<ServerUnderTest> server_;
};

// 1. Shared-token bootstrap; the chain passes `openssl verify`; the leaf is a client
// certificate for the cluster only.
TEST_F(BootstrapTest, SharedTokenRegistersAndTheChainVerifiesWithOpenssl) {
  std::string store = dir_ + "/east";
  CommandResult registered =
      server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + store});
  ASSERT_EQ(registered.exit_code, 0) << registered.output;
  AgentUnderTest agent("east", store, server_->address());
  agent.Start();
  ASSERT_TRUE(agent.WaitConnected(absl::Seconds(20))) << agent.Log();

  std::string chain = agent.SecretKey(kClientSecret, "tls.crt");
  ASSERT_THAT(chain, HasSubstr("BEGIN CERTIFICATE"));
  WriteFile(dir_ + "/root.pem", RootPem());
  WriteFile(dir_ + "/chain.pem", chain);
  CommandResult verify = RunCommand({"openssl", "verify", "-purpose", "sslclient", "-CAfile",
                              dir_ + "/root.pem", "-untrusted", dir_ + "/chain.pem", dir_ + "/chain.pem"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr(": OK"));

  CommandResult text = RunCommand({"openssl", "x509", "-in", dir_ + "/chain.pem", "-noout", "-text"});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_THAT(text.output, HasSubstr("CA:FALSE"));
  EXPECT_THAT(text.output, HasSubstr("TLS Web Client Authentication"));
  EXPECT_THAT(text.output, Not(HasSubstr("TLS Web Server Authentication")));
  EXPECT_THAT(text.output, HasSubstr("DNS:east"));
  EXPECT_THAT(text.output, HasSubstr("Subject: CN = east"));

  // The key stayed on the workload side: the management store holds no copy of it.
  std::string key = agent.SecretKey(kClientSecret, "tls.key");
  ASSERT_THAT(key, HasSubstr("PRIVATE KEY"));
  CommandResult grep = RunCommand({"grep", "-rqF", key.substr(40, 40), server_->secrets_dir()});
  EXPECT_NE(grep.exit_code, 0) << "the agent's private key is in the management store";

  EXPECT_THAT(server_->Metrics(), HasSubstr("relay_push_clients_connected{cluster=\"east\"} 1"));
  EXPECT_THAT(server_->Metrics(), HasSubstr("relay_certificates_issued_total{kind=\"register\"} 1"));
}

// 2. A single-use bootstrap token works once.
TEST_F(BootstrapTest, SingleUseBootstrapTokenWorksOnce) {
  std::string store = dir_ + "/east";
  CommandResult registered = server_->Relayctl(
      {"register", "--cluster=east", "--bootstrap_token_ttl=1h", "--secrets_dir=" + store});
  ASSERT_EQ(registered.exit_code, 0) << registered.output;
  EXPECT_THAT(registered.output, HasSubstr("single-use bootstrap token"));
  std::string token = SecretFile(store, "relay-identity-token-secret", "token");
  EXPECT_NE(token, Token());

  AgentUnderTest first("east", store, server_->address());
  first.Start();
  ASSERT_TRUE(first.WaitConnected(absl::Seconds(20))) << first.Log();

  // The same token again, from a second store.
  std::string second_store = dir_ + "/east-again";
  WritePlainSecret(second_store, "relay-root-tls-secret", {{"ca.crt", RootPem()}});
  WritePlainSecret(second_store, "relay-identity-token-secret", {{"token", token}});
  AgentUnderTest second("east", second_store, server_->address());
  second.Start();
  // Refused, and it keeps asking with backoff (an operator may still fix the token).
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(second.Log(), "bootstrap token is not valid"); }, kPatience))
      << second.Log();
  EXPECT_TRUE(second.process()->Running());
  EXPECT_EQ(SecretFile(second_store, kClientSecret, "tls.crt"), "");
}

// 3. A wrong token is UNAUTHENTICATED; nothing is issued or written. The agent keeps
// asking with backoff, and once an operator puts the right token in place it registers
// without a restart.
TEST_F(BootstrapTest, WrongTokenIssuesAndWritesNothing) {
  std::string store = dir_ + "/east";
  WritePlainSecret(store, "relay-root-tls-secret", {{"ca.crt", RootPem()}});
  WritePlainSecret(store, "relay-identity-token-secret", {{"token", "not-the-token"}});
  AgentUnderTest agent("east", store, server_->address());
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(agent.Log(), "identity token is not valid"); }, kPatience))
      << agent.Log();
  EXPECT_TRUE(agent.process()->Running());
  EXPECT_THAT(agent.Log(), Not(HasSubstr("not-the-token")));
  EXPECT_EQ(SecretFile(store, kClientSecret, "tls.crt"), "");
  std::string metrics = server_->Metrics();
  EXPECT_GE(MetricValue(metrics, "relay_certificates_refused_total{reason=\"bad_token\"}"), 1);
  EXPECT_THAT(metrics, Not(HasSubstr("relay_certificates_issued_total{")));
  CommandResult list = server_->Relayctl({"clusters", "list"});
  EXPECT_THAT(list.output, Not(HasSubstr("east")));

  WritePlainSecret(store, "relay-identity-token-secret", {{"token", Token()}});
  EXPECT_TRUE(agent.WaitConnected(absl::Seconds(20))) << agent.Log();
}

// 4. An agent that holds a different root refuses the server.
TEST_F(BootstrapTest, AgentWithAnotherRootDoesNotTrustTheServer) {
  CommandResult other_root = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", dir_ + "/other.key",
                                  "-out", dir_ + "/other.crt", "-subj", "/CN=other-root", "-days", "2"});
  ASSERT_EQ(other_root.exit_code, 0) << other_root.output;
  std::string store = dir_ + "/east";
  WritePlainSecret(store, "relay-root-tls-secret", {{"ca.crt", ReadFileOrEmpty(dir_ + "/other.crt")}});
  WritePlainSecret(store, "relay-identity-token-secret", {{"token", Token()}});
  AgentUnderTest agent("east", store, server_->address());
  agent.Start();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(agent.Log(), "is not trusted"); }, kPatience))
      << agent.Log();
  EXPECT_THAT(agent.Log(), HasSubstr("relay-root-tls-secret"));
  EXPECT_TRUE(agent.process()->Running());
  EXPECT_EQ(SecretFile(store, kClientSecret, "tls.crt"), "");
}

// 5. An authority the server certificate does not carry.
TEST_F(BootstrapTest, AuthorityThatTheServerDoesNotCarryFailsClearly) {
  std::string store = dir_ + "/east";
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + store}).exit_code, 0);
  AgentUnderTest agent("east", store, server_->address(), {"--authority=relay.wrong.example"});
  agent.Start();
  // (The log quotes the message: its own quotes appear as \".)
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(agent.Log(),
                                 "does not present a certificate for the authority \\\"relay.wrong.example\\\"");
      }, kPatience))
      << agent.Log();
  EXPECT_TRUE(agent.process()->Running());
  EXPECT_EQ(SecretFile(store, kClientSecret, "tls.crt"), "");
}

// Bad input on the command line and in files: clear messages, exit code 2.
TEST_F(BootstrapTest, BadClusterNamesValuesAndEmptyTokensAreExplained) {
  std::string store = dir_ + "/east";
  CommandResult bad_name = RunCommand({AgentBinary(), "--cluster=East_1", "--secrets_dir=" + store,
                                "--server_address=" + server_->address()});
  EXPECT_EQ(bad_name.exit_code, 2);
  EXPECT_THAT(bad_name.output, HasSubstr("is not a DNS label"));

  WriteFile(dir_ + "/values.yaml", "glooAgent:\n  relay:\n    serverAdress: x:1\n");
  CommandResult bad_values = RunCommand({AgentBinary(), "--cluster=east", "--secrets_dir=" + store,
                                  "--values=" + dir_ + "/values.yaml"});
  EXPECT_EQ(bad_values.exit_code, 2);
  EXPECT_THAT(bad_values.output, HasSubstr("values.yaml:3: glooAgent.relay.serverAdress: unknown key"));

  WriteFile(dir_ + "/mgmt-values.yaml", "glooMgmtServer:\n  relay:\n    disableCA: true\n");
  CommandResult bad_server_values = RunCommand({ServerBinary(), "--secrets_dir=" + dir_ + "/other-mgmt",
                                         "--values=" + dir_ + "/mgmt-values.yaml"});
  EXPECT_EQ(bad_server_values.exit_code, 2);
  EXPECT_THAT(bad_server_values.output, HasSubstr("glooMgmtServer.relay.disableCA: unknown key"));

  WritePlainSecret(store, "relay-root-tls-secret", {{"ca.crt", RootPem()}});
  WritePlainSecret(store, "relay-identity-token-secret", {{"token", "\n"}});
  CommandResult empty_token = RunCommand({AgentBinary(), "--cluster=east", "--secrets_dir=" + store,
                                   "--server_address=" + server_->address()});
  EXPECT_EQ(empty_token.exit_code, 2);
  EXPECT_THAT(empty_token.output, HasSubstr("key \"token\" is empty"));
  EXPECT_THAT(empty_token.output, HasSubstr("relayctl register"));

  // Nothing at all: the message lists what is missing and how to provide it.
  CommandResult nothing = RunCommand({AgentBinary(), "--cluster=west", "--secrets_dir=" + dir_ + "/empty",
                               "--server_address=" + server_->address()});
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_THAT(nothing.output, HasSubstr("relay-root-tls-secret"));
  EXPECT_THAT(nothing.output, HasSubstr("relay-identity-token-secret"));
  EXPECT_THAT(nothing.output, HasSubstr("relayctl register --cluster west"));
}

}  // namespace
}  // namespace relay::e2e
