// Issue 16: the intermediate rotates under connected agents, by itself and when an
// operator asks; a server started after its intermediate expired makes a new one.
// Lifetimes of seconds make each step happen within the test.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "secrets/directory_store.h"

namespace relay::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The certificate right above the leaf in a chain PEM (its issuer), or "".
std::string IssuerOf(const std::string& chain_pem) {
  auto chain = pki::ParseCertificateChainPem(chain_pem);
  if (!chain.ok() || chain->size() < 2) return "";
  auto pem = pki::CertificateToPem((*chain)[1].get());
  return pem.ok() ? *pem : "";
}

std::string CurrentIntermediate(const ServerUnderTest& server) {
  return SecretFile(server.secrets_dir(), "relay-tls-signing-secret", "tls.crt");
}

std::string ClientIssuer(const AgentUnderTest& agent) {
  return IssuerOf(agent.SecretKey("relay-client-tls-secret", "tls.crt"));
}

// 8 s client certificates under 40 s intermediates: the intermediate is replaced 16 s
// (two client lifetimes) before it expires, i.e. about 24 s after it was made; agents
// renew every ~4 s and move to the new one by themselves (the chain comes with each
// certificate), their streams up throughout. Then an operator's rotation.
TEST(CaRotationTest, TheIntermediateRotatesUnderConnectedAgents) {
  const std::string dir = MakeTempDir("ca-rotation");
  ServerUnderTest server(dir + "/mgmt", {"--client_cert_ttl=8s", "--intermediate_lifetime=40s"});
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const std::string first = CurrentIntermediate(server);
  ASSERT_FALSE(first.empty());
  // Within a day of expiry from the start: the log says so, once for this intermediate.
  EXPECT_TRUE(WaitFor([&] { return CountOccurrences(server.Log(), "event=ca_expires_soon certificate=intermediate") == 1; },
                      kPatience))
      << server.Log();
  std::vector<std::unique_ptr<AgentUnderTest>> agents;
  for (const char* cluster : {"east", "west", "north"}) {
    agents.push_back(StartConnectedAgent(server, dir, cluster, {"--rotation=builtin"}));
  }
  for (const auto& agent : agents) ASSERT_EQ(ClientIssuer(*agent), first) << agent->Log();

  ASSERT_TRUE(WaitFor([&] { return CountOccurrences(server.Log(), "event=intermediate_rotated") >= 1; },
                      absl::Seconds(60)))
      << server.Log();
  const std::string second = CurrentIntermediate(server);
  ASSERT_NE(second, first);
  EXPECT_THAT(SecretFile(server.secrets_dir(), "relay-tls-signing-secret", "retired.crt"), HasSubstr(first.substr(0, 80)));
  // The relay port serves a server certificate under the new one.
  EXPECT_TRUE(WaitFor([&] { return IssuerOf(SecretFile(server.secrets_dir(), "relay-server-tls-secret", "tls.crt")) == second; },
                      kPatience));
  for (const auto& agent : agents) {
    EXPECT_TRUE(WaitFor([&] { return ClientIssuer(*agent) == second; }, kPatience)) << agent->Log();
  }

  // An operator's rotation: at once, and the status lists both earlier ones as retired.
  CommandResult rotated = server.Relayctl({"ca", "rotate-intermediate"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output;
  EXPECT_THAT(rotated.output, HasSubstr("new intermediate"));
  const std::string third = CurrentIntermediate(server);
  EXPECT_NE(third, second);
  CommandResult status = server.Relayctl({"ca", "status"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(CountOccurrences(status.output, "retired-intermediate"), 2) << status.output;
  EXPECT_THAT(status.output, HasSubstr("root"));
  for (const auto& agent : agents) {
    EXPECT_TRUE(WaitFor([&] { return ClientIssuer(*agent) == third; }, kPatience)) << agent->Log();
  }

  for (const auto& agent : agents) {
    const std::string metrics = agent->Metrics();
    EXPECT_EQ(MetricValue(metrics, "relay_agent_connected"), 1) << agent->Log();
    EXPECT_EQ(MetricValue(metrics, "relay_agent_heartbeats_unanswered_total"), 0) << agent->Log();
    EXPECT_EQ(CountOccurrences(agent->Log(), "event=relay_closed_by_server"), 0) << agent->Log();
    EXPECT_EQ(CountOccurrences(agent->Log(), "event=credentials_registered"), 1) << agent->Log();
  }
  EXPECT_THAT(server.Metrics(), HasSubstr("relay_certificate_expiry_timestamp_seconds{certificate=\"intermediate\"}"));
}

// A server started after its intermediate expired (the root still valid) makes a new
// one and serves; an agent whose certificate expired meanwhile registers again.
TEST(CaRotationTest, AServerBackAfterItsIntermediateExpiredMakesANewOne) {
  const std::string dir = MakeTempDir("ca-expired");
  ServerUnderTest server(dir + "/mgmt", {"--client_cert_ttl=2s", "--intermediate_lifetime=10s"});
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const std::string first = CurrentIntermediate(server);
  server.Stop();
  absl::SleepFor(absl::Seconds(11));  // past the intermediate's expiry
  ASSERT_TRUE(server.Start(&error)) << error;
  EXPECT_THAT(server.Log(), HasSubstr("event=intermediate_expired"));
  const std::string second = CurrentIntermediate(server);
  EXPECT_NE(second, first);
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(server, dir, "east", {"--rotation=builtin"});
  EXPECT_EQ(ClientIssuer(*agent), CurrentIntermediate(server)) << agent->Log();
}

// The shared token rotates with an overlap: an agent holding the previous token still
// registers within it; once a later rotation ends it, that token is refused; the new
// one works. A bootstrap token can be listed and revoked, and is then refused.
TEST(CaRotationTest, TheSharedTokenRotatesWithOverlapAndBootstrapTokensAreRevocable) {
  const std::string dir = MakeTempDir("token-rotation");
  ServerUnderTest server(dir + "/mgmt");
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  auto give_token = [&](const std::string& cluster, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"register", "--cluster=" + cluster, "--secrets_dir=" + dir + "/" + cluster};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult given = server.Relayctl(args);
    EXPECT_EQ(given.exit_code, 0) << given.output;
  };
  give_token("first");  // holds the original token
  CommandResult rotated = server.Relayctl({"token", "rotate", "--overlap=1h"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output;
  EXPECT_THAT(rotated.output, HasSubstr("previous one is accepted until"));
  give_token("second");  // holds the second token
  AgentUnderTest first("first", dir + "/first", server.address());
  first.Start();
  EXPECT_TRUE(first.WaitConnected(kPatience)) << first.Log();

  // Another rotation without overlap: the second token is now the previous one,
  // accepted for 0 s, so refused (as the original is).
  ASSERT_EQ(server.Relayctl({"token", "rotate", "--overlap=0s"}).exit_code, 0);
  AgentUnderTest second("second", dir + "/second", server.address());
  second.Start();
  EXPECT_TRUE(WaitFor([&] { return CountOccurrences(second.Log(), "registration_failed") >= 1; }, kPatience))
      << second.Log();
  EXPECT_THAT(second.Log(), Not(HasSubstr("relay_connected")));
  second.Stop();
  give_token("third");  // the current token
  AgentUnderTest third("third", dir + "/third", server.address());
  third.Start();
  EXPECT_TRUE(third.WaitConnected(kPatience)) << third.Log();

  // Bootstrap tokens: listed by hash prefix and cluster, revoked, then refused.
  give_token("fourth", {"--bootstrap_token_ttl=1h"});
  CommandResult listed = server.Relayctl({"tokens", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  ASSERT_THAT(listed.output, HasSubstr("fourth"));
  const std::string line = listed.output.substr(listed.output.find('\n') + 1);
  const std::string hash = line.substr(0, line.find(' '));
  CommandResult revoked = server.Relayctl({"tokens", "revoke", hash});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_THAT(revoked.output, HasSubstr("fourth"));
  EXPECT_THAT(server.Relayctl({"tokens", "list"}).output, Not(HasSubstr("fourth")));
  AgentUnderTest fourth("fourth", dir + "/fourth", server.address());
  fourth.Start();
  EXPECT_TRUE(WaitFor([&] { return CountOccurrences(fourth.Log(), "registration_failed") >= 1; }, kPatience))
      << fourth.Log();
  EXPECT_THAT(fourth.Log(), Not(HasSubstr("relay_connected")));
  EXPECT_NE(server.Relayctl({"tokens", "revoke", "abc"}).exit_code, 0);
}

// The trust bundle reaches every agent on its stream: a root added to the server's
// bundle while it runs (the first step of a root rotation, here by hand) is pushed to
// every stream, stored by each agent in relay-root-tls-secret and acknowledged, and
// relayctl ca status counts them; the streams stay up.
TEST(CaRotationTest, AnAddedRootReachesEveryAgentAndIsCounted) {
  const std::string dir = MakeTempDir("trust-bundle");
  ServerUnderTest server(dir + "/mgmt");
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  std::vector<std::unique_ptr<AgentUnderTest>> agents;
  for (const char* cluster : {"east", "west"}) agents.push_back(StartConnectedAgent(server, dir, cluster));
  // What each agent holds, from its Hello.
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(server.Relayctl({"ca", "status"}).output, "stored by 2 of 2 registered clusters");
  }, kPatience)) << server.Relayctl({"ca", "status"}).output;

  // A second root beside the first (made with the openssl command line).
  const std::string root_b = dir + "/root-b";
  CommandResult made = RunCommand({"openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", root_b + ".key", "-out",
                                   root_b + ".crt", "-subj", "/CN=relay-root-b", "-days", "30", "-addext",
                                   "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string root_a = SecretFile(server.secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string bundle = root_a + ReadFileOrEmpty(root_b + ".crt");
  {
    // While the server runs: it follows the root secret and pushes the bundle.
    auto store = secrets::DirectorySecretStore::Create(server.secrets_dir());
    auto root_secret = *(*store)->Get("gloo-mesh", "relay-root-tls-secret");
    // A bundle without the intermediate's issuer is refused and changes nothing.
    auto without_a = root_secret;
    without_a["ca.crt"] = ReadFileOrEmpty(root_b + ".crt");
    ASSERT_TRUE((*store)->Put("gloo-mesh", "relay-root-tls-secret", without_a).ok());
    EXPECT_TRUE(WaitFor([&] { return CountOccurrences(server.Log(), "event=trust_bundle_change_refused") == 1; },
                        kPatience)) << server.Log();
    root_secret["ca.crt"] = bundle;
    ASSERT_TRUE((*store)->Put("gloo-mesh", "relay-root-tls-secret", root_secret).ok());
  }
  for (const auto& agent : agents) {
    EXPECT_TRUE(WaitFor([&] { return agent->SecretKey("relay-root-tls-secret", "ca.crt") == bundle; }, kPatience))
        << agent->Log();
    EXPECT_TRUE(WaitFor([&] { return CountOccurrences(agent->Log(), "event=trust_bundle_stored") == 1; }, kPatience))
        << agent->Log();
  }
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(server.Relayctl({"ca", "status"}).output, "stored by 2 of 2 registered clusters");
  }, kPatience)) << server.Relayctl({"ca", "status"}).output;
  for (const auto& agent : agents) {
    EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_reconnects_total"), 0) << agent->Log();
  }
  // The agents go on with the bundle: a restart connects with it.
  agents[0]->Stop();
  agents[0]->Start();
  EXPECT_TRUE(agents[0]->WaitConnected(kPatience)) << agents[0]->Log();
  EXPECT_EQ(CountOccurrences(agents[0]->Log(), "event=trust_bundle_stored"), 0) << agents[0]->Log();
}

}  // namespace
}  // namespace relay::e2e
