// The relay hub and its streams in this process (service_testing.h): real TLS, time
// moved by calling Sweep with a later `now`.
#include "mgmt/relay_hub.h"
#include "pki/certificate.h"

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/status_matchers.h"
#include "common/version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mgmt/service_testing.h"

namespace relay::mgmt {
namespace {

namespace v1 = ::relay::v1;
using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;
using testing::ServicesUnderTest;

constexpr absl::Duration kWait = absl::Seconds(20);

// One relay stream, driven by hand.
class Stream {
 public:
  Stream(ServicesUnderTest& services, const ServicesUnderTest::Credentials& credentials)
      : stub_(v1::Relay::NewStub(services.MutualTlsChannel(credentials.key_pem, credentials.chain_pem))),
        trust_bundle_digest_(services.core().trust_bundle_digest()) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Connect(&context_);
  }
  // As an agent that holds the server's trust bundle, unless told otherwise.
  bool Hello(const std::string& cluster, int64_t acked_version = 0, const std::string* trust_bundle_digest = nullptr) {
    v1::AgentMessage hello;
    hello.mutable_hello()->set_cluster(cluster);
    hello.mutable_hello()->set_version(std::string("relay-agent/") + kVersion);
    hello.mutable_hello()->set_acked_version(acked_version);
    hello.mutable_hello()->set_trust_bundle_digest(trust_bundle_digest ? *trust_bundle_digest : trust_bundle_digest_);
    return stream_->Write(hello);
  }
  bool Write(const v1::AgentMessage& message) { return stream_->Write(message); }
  // The next message, or nullopt when the stream ended.
  std::optional<v1::ServerMessage> Read() {
    v1::ServerMessage message;
    if (!stream_->Read(&message)) return std::nullopt;
    return message;
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    while (Read()) {
    }
    return stream_->Finish();
  }

 private:
  std::unique_ptr<v1::Relay::Stub> stub_;
  const std::string trust_bundle_digest_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>> stream_;
};

bool WaitFor(const std::function<bool()>& condition) {
  absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

class RelayHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    services_ = ServicesUnderTest::Start();
    ASSERT_NE(services_, nullptr);
    ServicesUnderTest::Registered east = services_->Register("east");
    ASSERT_THAT(east.status, IsOk());
    east_ = east.credentials;
  }
  std::unique_ptr<ServicesUnderTest> services_;
  ServicesUnderTest::Credentials east_;
};

TEST_F(RelayHubTest, AStreamIsWelcomedItsHeartbeatsAnsweredAndItCounts) {
  Stream stream(*services_, east_);
  ASSERT_TRUE(stream.Hello("east"));
  std::optional<v1::ServerMessage> welcome = stream.Read();
  ASSERT_TRUE(welcome && welcome->has_welcome());
  EXPECT_EQ(welcome->welcome().cluster(), "east");
  std::string serial;
  EXPECT_TRUE(services_->hub().Connected("east", &serial));
  EXPECT_EQ(serial, east_.serial);
  EXPECT_TRUE(WaitFor([&] { return services_->core().metrics().push_clients_connected.Value({"east"}) == 1; }));

  v1::AgentMessage beat;
  beat.mutable_heartbeat()->set_sequence(7);
  ASSERT_TRUE(stream.Write(beat));
  std::optional<v1::ServerMessage> ack = stream.Read();
  ASSERT_TRUE(ack && ack->has_heartbeat_ack());
  EXPECT_EQ(ack->heartbeat_ack().sequence(), 7);
  EXPECT_THAT(stream.Finish(), IsOk());
  EXPECT_TRUE(WaitFor([&] { return !services_->hub().Connected("east", nullptr); }));
  EXPECT_TRUE(WaitFor([&] { return services_->core().metrics().push_clients_connected.Value({"east"}) == 0; }));
}

TEST_F(RelayHubTest, ANewerStreamReplacesTheOlder) {
  Stream older(*services_, east_);
  ASSERT_TRUE(older.Hello("east"));
  ASSERT_TRUE(older.Read());  // welcome
  Stream newer(*services_, east_);
  ASSERT_TRUE(newer.Hello("east"));
  ASSERT_TRUE(newer.Read());
  std::optional<v1::ServerMessage> close = older.Read();
  ASSERT_TRUE(close && close->has_close());
  EXPECT_THAT(close->close().reason(), HasSubstr("replaced"));
  EXPECT_THAT(older.Finish(), StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(services_->hub().Connected("east", nullptr));
}

// Time moves through Sweep's `now`: a silent stream and one whose certificate expired
// are closed, saying why.
TEST_F(RelayHubTest, SweepClosesSilentAndExpiredStreams) {
  Stream stream(*services_, east_);
  ASSERT_TRUE(stream.Hello("east"));
  ASSERT_TRUE(stream.Read());
  services_->hub().Sweep(absl::Now(), absl::Hours(1));  // nothing due
  EXPECT_TRUE(services_->hub().Connected("east", nullptr));
  services_->hub().Sweep(absl::Now() + absl::Minutes(5), absl::Minutes(1));
  std::optional<v1::ServerMessage> close = stream.Read();
  ASSERT_TRUE(close && close->has_close());
  EXPECT_EQ(close->close().reason(), "no heartbeat from the agent");
  EXPECT_THAT(stream.Finish(), StatusIs(absl::StatusCode::kDeadlineExceeded));

  Stream again(*services_, east_);
  ASSERT_TRUE(again.Hello("east"));
  ASSERT_TRUE(again.Read());
  services_->hub().Sweep(absl::Now() + absl::Hours(24 * 365), absl::Hours(24 * 366));
  close = again.Read();
  ASSERT_TRUE(close && close->has_close());
  EXPECT_THAT(close->close().reason(), HasSubstr("expired"));
  EXPECT_THAT(again.Finish(), StatusIs(absl::StatusCode::kUnauthenticated));
}

// A stream that is behind gets the latest snapshot (read off the gRPC thread); its ack
// is recorded, and an ack for a version never pushed is not.
TEST_F(RelayHubTest, ASnapshotReachesAStreamThatIsBehindAndItsAckIsRecorded) {
  ASSERT_THAT(services_->core().registry().PushSnapshot("east", {{"policy.yaml", "p1"}}), IsOk());
  Stream stream(*services_, east_);
  ASSERT_TRUE(stream.Hello("east", /*acked_version=*/0));
  ASSERT_TRUE(stream.Read());  // welcome
  std::optional<v1::ServerMessage> snapshot = stream.Read();
  ASSERT_TRUE(snapshot && snapshot->has_snapshot());
  EXPECT_EQ(snapshot->snapshot().version(), 1);
  ASSERT_EQ(snapshot->snapshot().resources_size(), 1);
  EXPECT_EQ(snapshot->snapshot().resources(0).content(), "p1");

  v1::AgentMessage bogus;
  bogus.mutable_ack()->set_snapshot_version(99);
  ASSERT_TRUE(stream.Write(bogus));
  v1::AgentMessage ack;
  ack.mutable_ack()->set_snapshot_version(1);
  ASSERT_TRUE(stream.Write(ack));
  EXPECT_TRUE(WaitFor([&] { return services_->core().registry().Find("east")->acked_version == 1; }));
  // The gauge is set once the ack is durable, just after the record: wait for it too.
  EXPECT_TRUE(WaitFor([&] { return services_->core().metrics().snapshot_acked_version.Value({"east"}) == 1; }));
  EXPECT_THAT(stream.Finish(), IsOk());
}

TEST_F(RelayHubTest, HelloForAnotherClusterOrAnotherMajorVersionIsClosed) {
  Stream other(*services_, east_);
  ASSERT_TRUE(other.Hello("west"));
  std::optional<v1::ServerMessage> close = other.Read();
  ASSERT_TRUE(close && close->has_close());
  EXPECT_THAT(other.Finish(), StatusIs(absl::StatusCode::kPermissionDenied));

  Stream old(*services_, east_);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_cluster("east");
  hello.mutable_hello()->set_version("relay-agent/99.0.0");
  ASSERT_TRUE(old.Write(hello));
  close = old.Read();
  ASSERT_TRUE(close && close->has_close());
  EXPECT_THAT(close->close().reason(), HasSubstr("not compatible"));
  EXPECT_THAT(old.Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(services_->core().metrics().agent_version_skew.Value({"major"}), 1);
}

// An agent that holds another trust bundle gets the server's after Welcome; its ack is
// recorded, and an ack of any other digest (malformed, or not the bundle served) is not.
TEST_F(RelayHubTest, AnAgentBehindGetsTheTrustBundleAndItsAckIsRecorded) {
  Stream stream(*services_, east_);
  const std::string old_digest(64, 'a');
  ASSERT_TRUE(stream.Hello("east", 0, &old_digest));
  std::optional<v1::ServerMessage> welcome = stream.Read();
  ASSERT_TRUE(welcome && welcome->has_welcome());
  std::optional<v1::ServerMessage> bundle = stream.Read();
  ASSERT_TRUE(bundle && bundle->has_trust_bundle());
  EXPECT_EQ(bundle->trust_bundle().digest(), services_->core().trust_bundle_digest());
  EXPECT_EQ(bundle->trust_bundle().ca_pem(), services_->core().root_bundle_pem());
  EXPECT_EQ(pki::Sha256Hex(bundle->trust_bundle().ca_pem()), bundle->trust_bundle().digest());
  v1::AgentMessage bad;
  bad.mutable_trust_bundle_ack()->set_digest("not hex");
  ASSERT_TRUE(stream.Write(bad));
  v1::AgentMessage ack;
  ack.mutable_trust_bundle_ack()->set_digest(bundle->trust_bundle().digest());
  ASSERT_TRUE(stream.Write(ack));
  EXPECT_TRUE(WaitFor([&] {
    std::optional<ClusterRecord> record = services_->core().registry().Find("east");
    return record && record->trust_bundle == services_->core().trust_bundle_digest();
  }));
  // Well-formed digests of bundles this server does not serve, alternating: each would
  // otherwise be a registry write.
  for (int i = 0; i < 4; ++i) {
    v1::AgentMessage foreign;
    foreign.mutable_trust_bundle_ack()->set_digest(std::string(64, i % 2 ? 'b' : 'c'));
    ASSERT_TRUE(stream.Write(foreign));
  }
  EXPECT_TRUE(WaitFor([&] { return services_->core().metrics().trust_bundle_acks_ignored.Value({}) == 5; }))
      << "the malformed ack and the four foreign ones are counted";
  std::optional<ClusterRecord> record = services_->core().registry().Find("east");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->trust_bundle, services_->core().trust_bundle_digest());
  EXPECT_THAT(stream.Finish(), IsOk());
}

}  // namespace
}  // namespace relay::mgmt
