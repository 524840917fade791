#include "common/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/time/clock.h"
#include "common/status_matchers.h"
#include "common/tcp_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace relay {
namespace {

using ::relay::testing::ConnectToLocalhost;
using ::relay::testing::IsOk;

HttpEndpoints::Routes Routes(bool* ready) {
  return {[] { return std::string("relay_up 1\n"); }, [] { return std::string(); },
          [ready] { return *ready ? std::string() : std::string("starting"); }};
}

TEST(HttpEndpointsTest, ServesMetricsHealthAndReadiness) {
  bool ready = false;
  auto endpoints = HttpEndpoints::Start("127.0.0.1:0", Routes(&ready));
  ASSERT_THAT(endpoints, IsOk());
  httplib::Client client("127.0.0.1", (*endpoints)->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "relay_up 1\n");
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  auto not_ready = client.Get("/readyz");
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(not_ready->body, "starting\n");
  ready = true;
  EXPECT_EQ(client.Get("/readyz")->status, 200);
  EXPECT_EQ(client.Get("/other")->status, 404);
  EXPECT_FALSE(HttpEndpoints::Start("nonsense", Routes(&ready)).ok());
}

// A thousand connections that never send a request must not keep a probe waiting (a
// thread-per-connection server answered one only after 64 of them timed out in turn).
TEST(HttpEndpointsTest, ProbesAreAnsweredWithAThousandIdleConnectionsOpen) {
  rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  ASSERT_GE(limit.rlim_cur, 2200u) << "the test needs 2,200 descriptors (server and client side)";

  bool ready = true;
  HttpEndpoints::Limits limits;
  limits.idle_timeout = absl::Seconds(30);  // they stay for the whole test
  auto endpoints = HttpEndpoints::Start("127.0.0.1:0", Routes(&ready), limits);
  ASSERT_THAT(endpoints, IsOk());
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    int fd = ConnectToLocalhost((*endpoints)->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    if (i % 2 == 0) (void)!write(fd, "GET /metr", 9);  // half of them slow: a partial request
    idle.push_back(fd);
  }
  httplib::Client client("127.0.0.1", (*endpoints)->port());
  client.set_read_timeout(10);
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    absl::Time start = absl::Now();
    auto response = client.Get(path);
    ASSERT_TRUE(response) << path << " unanswered with 1,000 idle connections";
    EXPECT_EQ(response->status, 200) << path;
    std::cout << path << " answered in " << absl::FormatDuration(absl::Now() - start)
              << " with 1,000 idle connections open\n";
  }
  for (int fd : idle) close(fd);
}

// An idle or slow client is dropped after the idle timeout.
TEST(HttpEndpointsTest, IdleAndSlowClientsAreClosedAfterTheTimeout) {
  bool ready = true;
  HttpEndpoints::Limits limits;
  limits.idle_timeout = absl::Seconds(1);
  auto endpoints = HttpEndpoints::Start("127.0.0.1:0", Routes(&ready), limits);
  ASSERT_THAT(endpoints, IsOk());
  int silent = ConnectToLocalhost((*endpoints)->port());
  int slow = ConnectToLocalhost((*endpoints)->port());
  ASSERT_GE(silent, 0);
  ASSERT_GE(slow, 0);
  (void)!write(slow, "GET /hea", 8);
  for (int fd : {silent, slow}) {
    pollfd waiting{fd, POLLIN, 0};
    ASSERT_EQ(poll(&waiting, 1, 20000), 1) << "the server never closed an idle connection";
    char byte;
    EXPECT_EQ(read(fd, &byte, 1), 0);  // closed by the server
    close(fd);
  }
}

}  // namespace
}  // namespace relay
