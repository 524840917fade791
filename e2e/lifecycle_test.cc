// After first contact: snapshots, deregistration, and a server restart.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("lifecycle");
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt");
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }

  std::unique_ptr<AgentUnderTest> ConnectedAgent(const std::string& cluster) {
    return StartConnectedAgent(*server_, dir_, cluster);
  }

  // The "CONNECTED" column of `relayctl clusters list` for `cluster`.
  std::string ListRow(const std::string& cluster) {
    CommandResult list = server_->Relayctl({"clusters", "list"});
    for (absl::string_view line : absl::StrSplit(list.output, '\n')) {
      if (absl::StartsWith(line, cluster + " ")) return std::string(line);
    }
    return "";
  }

  bool Connected(const std::string& cluster) {
    return server_->Metrics().find(absl::StrCat("relay_push_clients_connected{cluster=\"", cluster,
                                                "\"} 1")) != std::string::npos;
  }

  std::string dir_;
  std::unique_ptr<ServerUnderTest> server_;
};

// 10. `relayctl push` reaches the agent's output directory and is acknowledged.
TEST_F(LifecycleTest, PushReachesTheOutputDirectoryAndIsAcked) {
  auto agent = ConnectedAgent("east");
  WriteFile(dir_ + "/files/policy.yaml", "kind: Policy\nname: p1\n");
  WriteFile(dir_ + "/files/routes.json", "{\"routes\": 3}");
  CommandResult pushed = server_->Relayctl(
      {"push", "--cluster=east", dir_ + "/files/policy.yaml", dir_ + "/files/routes.json"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  EXPECT_THAT(pushed.output, HasSubstr("snapshot version 1"));
  ASSERT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agent->output_dir() + "/routes.json") == "{\"routes\": 3}"; }, kPatience))
      << agent->Log();
  EXPECT_EQ(ReadFileOrEmpty(agent->output_dir() + "/policy.yaml"), "kind: Policy\nname: p1\n");
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(ListRow("east"), "1 (1)"); }, kPatience))
      << ListRow("east");

  // A second snapshot replaces the first as a whole.
  WriteFile(dir_ + "/files/v2.yaml", "two");
  ASSERT_EQ(server_->Relayctl({"push", "--cluster=east", dir_ + "/files/v2.yaml"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agent->output_dir() + "/v2.yaml") == "two"; }, kPatience));
  EXPECT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agent->output_dir() + "/policy.yaml").empty(); }, kPatience));
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(ListRow("east"), "2 (2)"); }, kPatience));

  // A resource name that is not a plain file name is refused.
  WriteFile(dir_ + "/files/..hidden", "x");
  CommandResult bad = server_->Relayctl({"push", "--cluster=east", dir_ + "/files/..hidden"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, HasSubstr("not a plain file name"));
}

// 8. Deregistration closes the stream at once (the server says why, rather than the
// stream dying of silence), and the agent cannot come back.
TEST_F(LifecycleTest, DeregisterClosesTheStreamAndKeepsTheAgentOut) {
  auto agent = ConnectedAgent("east");
  auto other = ConnectedAgent("west");
  ASSERT_TRUE(WaitFor([&] { return Connected("east"); }, kPatience));

  CommandResult deregistered = server_->Relayctl({"clusters", "deregister", "east"});
  ASSERT_EQ(deregistered.exit_code, 0) << deregistered.output;
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(agent->Log(), "cluster deregistered by an operator"); },
                      kPatience))
      << agent->Log();
  EXPECT_THAT(agent->Log(), Not(HasSubstr("no heartbeat")));

  // It keeps trying and keeps being refused (twice, at least); the other cluster is
  // untouched.
  ASSERT_TRUE(WaitFor([&] { return CountOccurrences(agent->Log(), "was deregistered") >= 2; }, kPatience)) << agent->Log();
  EXPECT_THAT(ListRow("east"), MatchesRegex("east +deregistered +no .*"));
  EXPECT_THAT(ListRow("west"), MatchesRegex("west +yes +yes .*"));
  EXPECT_FALSE(Connected("east"));

  // A restarted agent, and a fresh one with only the shared token, are refused too;
  // they keep asking with backoff, so that an admit brings them back.
  agent->Stop();
  agent->Start();
  EXPECT_FALSE(agent->WaitConnected(absl::Seconds(2)));
  agent->Stop();
  std::string fresh = dir_ + "/east-fresh";
  WritePlainSecret(fresh, "relay-root-tls-secret",
                   {{"ca.crt", SecretFile(server_->secrets_dir(), "relay-root-tls-secret", "ca.crt")}});
  WritePlainSecret(fresh, "relay-identity-token-secret",
                   {{"token", SecretFile(server_->secrets_dir(), "relay-identity-token-secret", "token")}});
  AgentUnderTest again("east", fresh, server_->address());
  again.Start();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(again.Log(), "was deregistered"); }, kPatience))
      << again.Log();
  EXPECT_TRUE(again.process()->Running());
  EXPECT_EQ(SecretFile(fresh, "relay-client-tls-secret", "tls.crt"), "");

  // An operator admits it again with relayctl register; the waiting agent connects.
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + fresh}).exit_code, 0);
  EXPECT_TRUE(again.WaitConnected(absl::Seconds(20))) << again.Log();
}

// Deregistered, then admitted again: the agent that kept running, with a certificate
// that is still valid but no longer accepted, registers again by itself and connects;
// its rotator goes on renewing. No file is deleted by hand.
TEST_F(LifecycleTest, AdmittedAgainARunningAgentAndRotatorComeBackByThemselves) {
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address());
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;

  ASSERT_EQ(server_->Relayctl({"clusters", "deregister", "east"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(agent->Log(), "was deregistered"); }, kPatience))
      << agent->Log();
  ASSERT_FALSE(Connected("east"));

  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + agent->secrets_dir()}).exit_code, 0);
  // Back within one reconnect backoff (1 s in these tests), plus a registration.
  EXPECT_TRUE(WaitFor([&] { return Connected("east"); }, kPatience)) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("event=credentials_registered"));
  EXPECT_THAT(ListRow("east"), MatchesRegex("east +yes +yes .*"));
  // The rotator follows the new certificate: a forced renewal works with it.
  CommandResult renewed = ForceRotation("east", agent->secrets_dir(), server_->address());
  EXPECT_EQ(renewed.exit_code, 0) << renewed.output;
  EXPECT_EQ(rotator.Health().first, 200) << rotator.Health().second;
}

// 9. A server restart: agents reconnect by themselves and registration survives.
TEST_F(LifecycleTest, AgentsReconnectAfterAServerRestartAndRegistrationSurvives) {
  auto east = ConnectedAgent("east");
  auto west = ConnectedAgent("west");
  WriteFile(dir_ + "/files/a.txt", "A");
  ASSERT_EQ(server_->Relayctl({"push", "--cluster=east", dir_ + "/files/a.txt"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return ReadFileOrEmpty(east->output_dir() + "/a.txt") == "A"; }, kPatience));
  std::string east_serial_before = ListRow("east");

  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(east->Log(), "relay_stream_ended"); }, kPatience));
  std::string error;
  ASSERT_TRUE(server_->Start(&error)) << error;

  EXPECT_TRUE(WaitFor([&] { return Connected("east") && Connected("west"); }, kPatience))
      << server_->Log();
  EXPECT_THAT(ListRow("east"), MatchesRegex("east +yes +yes .* 1 \\(1\\)"));
  EXPECT_THAT(ListRow("west"), MatchesRegex("west +yes +yes .*"));
  // The agents kept their certificates: no new registration happened.
  EXPECT_THAT(server_->Metrics(), ::testing::Not(HasSubstr("relay_certificates_issued_total{")));
  // The snapshot they already hold is not sent again.
  EXPECT_EQ(absl::StrContains(east->Log(), "snapshot_applied version=1"), true);
  int applied = 0;
  for (size_t at = 0; (at = east->Log().find("snapshot_applied", at)) != std::string::npos; ++at) applied++;
  EXPECT_EQ(applied, 1);
}

}  // namespace
}  // namespace relay::e2e
