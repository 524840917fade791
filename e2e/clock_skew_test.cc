// 13. Agents whose clocks are minutes off the server's register, renew and keep their
// stream, and the server measures the difference (issue 17). The agent's and the
// rotator's clocks are moved with RELAY_TEST_CLOCK_OFFSET (common/clock.h): LD_PRELOAD
// time shifting does not reach Abseil's futex waits. The hook moves relay's own time,
// not OpenSSL's; what a skewed agent's TLS stack would see is the certificate dates
// relay checks itself (a certificate that is not yet valid to the agent's clock).
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"

namespace relay::e2e {
namespace {

// Starts an agent whose clock is `offset` off (the variable is inherited by the child
// only: it is unset again at once).
std::unique_ptr<AgentUnderTest> StartSkewedAgent(const ServerUnderTest& server, const std::string& dir,
                                                 const std::string& cluster, const std::string& offset) {
  const std::string store = dir + "/" + cluster;
  CommandResult registered = server.Relayctl({"register", "--cluster=" + cluster, "--secrets_dir=" + store});
  EXPECT_EQ(registered.exit_code, 0) << registered.output;
  auto agent = std::make_unique<AgentUnderTest>(cluster, store, server.address());
  setenv("RELAY_TEST_CLOCK_OFFSET", offset.c_str(), 1);
  agent->Start();
  unsetenv("RELAY_TEST_CLOCK_OFFSET");
  return agent;
}

std::string Serial(const AgentUnderTest& agent) {
  absl::StatusOr<pki::LeafSummary> leaf = pki::SummarizeLeafPem(agent.SecretKey("relay-client-tls-secret", "tls.crt"));
  return leaf.ok() ? leaf->serial_hex : "";
}

TEST(ClockSkewTest, AgentsMinutesOffRegisterRenewAndAreMeasured) {
  const std::string dir = MakeTempDir("skew");
  ServerUnderTest server(dir + "/mgmt");
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;

  // Three minutes behind: a certificate dated only 30 s back would not be valid yet to
  // it. Four minutes ahead.
  std::unique_ptr<AgentUnderTest> behind = StartSkewedAgent(server, dir, "behind", "-3m");
  std::unique_ptr<AgentUnderTest> ahead = StartSkewedAgent(server, dir, "ahead", "4m");
  ASSERT_TRUE(behind->WaitConnected(kPatience)) << behind->Log();
  ASSERT_TRUE(ahead->WaitConnected(kPatience)) << ahead->Log();
  EXPECT_THAT(behind->Log(), ::testing::HasSubstr("event=test_clock_offset"));

  // The server measures each from its heartbeats, and says so once per stream.
  auto skew = [&](const std::string& cluster) {
    return MetricValue(server.Metrics(), "relay_agent_clock_skew_seconds{cluster=\"" + cluster + "\"}");
  };
  EXPECT_TRUE(WaitFor([&] { return skew("behind") < -170 && skew("behind") > -190; }, kPatience))
      << server.Metrics();
  EXPECT_TRUE(WaitFor([&] { return skew("ahead") > 230 && skew("ahead") < 250; }, kPatience)) << server.Metrics();
  EXPECT_TRUE(WaitFor([&] { return CountOccurrences(server.Log(), "event=agent_clock_skew cluster=behind") == 1; },
                      kPatience));
  EXPECT_THAT(server.Log(), ::testing::HasSubstr("event=agent_clock_skew cluster=ahead skew_seconds=2"));

  // A renewal by a rotator as far behind: the agent takes the new certificate (it
  // checks its dates with its own clock), and connects with it when restarted.
  const std::string first = Serial(*behind);
  ASSERT_FALSE(first.empty());
  setenv("RELAY_TEST_CLOCK_OFFSET", "-3m", 1);
  CommandResult renewed = ForceRotation("behind", behind->secrets_dir(), server.address());
  unsetenv("RELAY_TEST_CLOCK_OFFSET");
  ASSERT_EQ(renewed.exit_code, 0) << renewed.output;
  const std::string second = Serial(*behind);
  ASSERT_NE(second, first);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(behind->Log(), absl::StrCat("event=client_secret_reloaded serial=", second));
  }, kPatience)) << behind->Log();
  behind->Stop();
  setenv("RELAY_TEST_CLOCK_OFFSET", "-3m", 1);
  behind->Start();
  unsetenv("RELAY_TEST_CLOCK_OFFSET");
  ASSERT_TRUE(behind->WaitConnected(kPatience)) << behind->Log();
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(server.Log(), absl::StrCat("event=agent_connected cluster=behind serial=", second));
  }, kPatience)) << behind->Log();
  // Still measured, on the new stream too.
  EXPECT_TRUE(WaitFor([&] { return skew("behind") < -170; }, kPatience));
}

}  // namespace
}  // namespace relay::e2e
