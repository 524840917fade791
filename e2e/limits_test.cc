// 12. The limits a public relay port needs (issue 17): connections still in their TLS
// handshake are bounded and timed out, streams per connection and message sizes are
// capped, and a client that pings without sending data is sent away; a connected agent
// is served throughout.
#include <poll.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/tcp_testing.h"
#include "e2e/harness.h"
#include "e2e/relay_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/csr.h"
#include "pki/keys.h"

namespace relay::e2e {
namespace {

using ::relay::testing::ConnectToLocalhost;
using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;

// The server end closed the connection (EOF or reset), seen from the client, within
// `patience`.
bool ClosedByServer(int client, absl::Duration patience = kPatience) {
  pollfd waiting{client, POLLIN, 0};
  if (poll(&waiting, 1, static_cast<int>(absl::ToInt64Milliseconds(patience))) != 1) return false;
  char byte;
  ssize_t n = read(client, &byte, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

class LimitsTest : public ::testing::Test {
 protected:
  // A server with `flags` and a connected agent "east".
  void StartWith(std::vector<std::string> flags) {
    dir_ = MakeTempDir("limits");
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", std::move(flags));
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    root_ = SecretFile(server_->secrets_dir(), "relay-root-tls-secret", "ca.crt");
    token_ = SecretFile(server_->secrets_dir(), "relay-identity-token-secret", "token");
    east_ = StartConnectedAgent(*server_, dir_, "east");
  }

  bool EastConnected() {
    return absl::StrContains(server_->Metrics(), "relay_push_clients_connected{cluster=\"east\"} 1");
  }

  double Metric(const std::string& series) { return MetricValue(server_->Metrics(), series); }

  grpc::Status Register(std::shared_ptr<grpc::Channel> channel, const std::string& cluster,
                        const std::string& csr_pem, int deadline_seconds = 10) {
    auto stub = relay::v1::Registration::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, deadline_seconds);
    context.AddMetadata("authorization", "Bearer " + token_);
    relay::v1::RegisterRequest request;
    request.set_cluster(cluster);
    request.set_csr_pem(csr_pem);
    relay::v1::CertificateResponse response;
    return stub->Register(&context, request, &response);
  }

  std::string Csr(const std::string& cluster) { return *pki::CreateCsrPem(pki::GenerateKey()->get(), cluster); }

  std::string dir_, root_, token_;
  std::unique_ptr<ServerUnderTest> server_;
  std::unique_ptr<AgentUnderTest> east_;
};

TEST_F(LimitsTest, ConnectionsInTheirHandshakeAreBoundedAndTimedOut) {
  ASSERT_NO_FATAL_FAILURE(StartWith({"--max_pending_handshakes=4", "--handshake_timeout=120s"}));
  // Four connections that never send a ClientHello fill the bound...
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(ConnectToLocalhost(server_->grpc_port()));
  ASSERT_TRUE(WaitFor([&] { return Metric("relay_pending_handshakes") == 4; }, kPatience)) << server_->Metrics();
  // ...so the next connection is closed at once, and counted.
  int shed = ConnectToLocalhost(server_->grpc_port());
  EXPECT_TRUE(ClosedByServer(shed));
  close(shed);
  EXPECT_TRUE(WaitFor([&] { return Metric("relay_handshakes_shed_total") >= 1; }, kPatience));
  // The connected agent is not disturbed.
  EXPECT_TRUE(EastConnected());
  // Once they go, new connections are served again.
  for (int fd : idle) close(fd);
  ASSERT_TRUE(WaitFor([&] { return Metric("relay_pending_handshakes") == 0; }, kPatience)) << server_->Metrics();
  EXPECT_THAT(Register(ServerAuthChannel(server_->address(), root_), "north", Csr("north")), IsOk());

  // A connection that does not finish its handshake in --handshake_timeout is closed.
  ServerUnderTest quick(dir_ + "/mgmt-quick", {"--handshake_timeout=1s"});
  std::string error;
  ASSERT_TRUE(quick.Start(&error)) << error;
  int slow = ConnectToLocalhost(quick.grpc_port());
  EXPECT_TRUE(ClosedByServer(slow));
  close(slow);
  EXPECT_TRUE(WaitFor([&] { return MetricValue(quick.Metrics(), "relay_pending_handshakes") == 0; }, kPatience));
}

TEST_F(LimitsTest, StreamsPerConnectionAreCapped) {
  ASSERT_NO_FATAL_FAILURE(StartWith({"--max_concurrent_streams=2"}));
  east_->Stop();  // its certificate opens the streams below
  ASSERT_TRUE(WaitFor([&] { return !EastConnected(); }, kPatience));
  std::string key = east_->SecretKey("relay-client-tls-secret", "tls.key");
  std::string chain = east_->SecretKey("relay-client-tls-secret", "tls.crt");
  auto channel = MutualTlsChannel(server_->address(), root_, key, chain);
  auto relay = relay::v1::Relay::NewStub(channel);
  // Two relay streams held open (the server waits for their Hello) take the
  // connection's two streams; the synchronous API has sent their headers on return.
  grpc::ClientContext first_context, second_context;
  SetDeadline(&first_context, 60);
  SetDeadline(&second_context, 60);
  auto first = relay->Connect(&first_context);
  auto second = relay->Connect(&second_context);
  // A third call on that connection waits for a free stream; on another connection it
  // is served.
  EXPECT_THAT(Register(channel, "north", Csr("north"), /*deadline_seconds=*/3),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(Register(ServerAuthChannel(server_->address(), root_), "north", Csr("north")), IsOk());
  first_context.TryCancel();
  first->Finish().IgnoreError();
  EXPECT_THAT(Register(channel, "south", Csr("south")), IsOk());
  second_context.TryCancel();
  second->Finish().IgnoreError();
}

TEST_F(LimitsTest, OversizedMessagesAreRefusedOnEveryMethod) {
  ASSERT_NO_FATAL_FAILURE(StartWith({"--max_receive_message_bytes=32768"}));
  const std::string big(40 * 1024, 'x');
  auto channel = ServerAuthChannel(server_->address(), root_);
  EXPECT_THAT(Register(channel, "north", Csr("north") + big), StatusIs(absl::StatusCode::kResourceExhausted));

  auto registration = relay::v1::Registration::NewStub(channel);
  grpc::ClientContext renew_context;
  SetDeadline(&renew_context);
  relay::v1::RenewRequest renew;
  renew.set_csr_pem(big);
  relay::v1::CertificateResponse response;
  EXPECT_THAT(registration->Renew(&renew_context, renew, &response), StatusIs(absl::StatusCode::kResourceExhausted));

  east_->Stop();  // its certificate opens the stream below, which must not replace the agent's
  ASSERT_TRUE(WaitFor([&] { return !EastConnected(); }, kPatience));
  std::string key = east_->SecretKey("relay-client-tls-secret", "tls.key");
  std::string chain = east_->SecretKey("relay-client-tls-secret", "tls.crt");
  auto stub = relay::v1::Relay::NewStub(MutualTlsChannel(server_->address(), root_, key, chain));
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub->Connect(&context);
  relay::v1::AgentMessage hello;
  hello.mutable_hello()->set_cluster("east");
  ASSERT_TRUE(stream->Write(hello));
  relay::v1::ServerMessage message;
  ASSERT_TRUE(stream->Read(&message));
  relay::v1::AgentMessage status;
  status.mutable_status()->set_message(big);
  stream->Write(status);
  while (stream->Read(&message)) {
  }
  EXPECT_THAT(stream->Finish(), StatusIs(absl::StatusCode::kResourceExhausted));
  // The agent itself, back, is served.
  east_->Start();
  EXPECT_TRUE(east_->WaitConnected(absl::Seconds(20))) << east_->Log();
}

TEST_F(LimitsTest, AClientThatPingsWithoutDataIsSentAway) {
  ASSERT_NO_FATAL_FAILURE(StartWith({"--min_ping_interval=10s"}));
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, kAuthority);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 500);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  auto pinger = grpc::CreateCustomChannel(server_->address(), grpc_tls::ServerAuthCredentials(root_), args);
  ASSERT_TRUE(pinger->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
  // Nothing but pings on this connection: the server sends GOAWAY (too_many_pings) and
  // closes it, so the channel leaves READY.
  EXPECT_TRUE(pinger->WaitForStateChange(GRPC_CHANNEL_READY,
                                         std::chrono::system_clock::now() + std::chrono::seconds(30)));
  EXPECT_NE(pinger->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(EastConnected());
}

}  // namespace
}  // namespace relay::e2e
