// 11. Hostile and malformed callers are refused while the server keeps serving the others.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_matchers.h"
#include "e2e/harness.h"
#include "e2e/relay_client.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "pki/csr.h"
#include "pki/keys.h"

namespace relay::e2e {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("hostile");
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt");
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    root_ = SecretFile(server_->secrets_dir(), "relay-root-tls-secret", "ca.crt");
    token_ = SecretFile(server_->secrets_dir(), "relay-identity-token-secret", "token");
    std::string store = dir_ + "/east";
    ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + store}).exit_code, 0);
    east_ = std::make_unique<AgentUnderTest>("east", store, server_->address());
    east_->Start();
    ASSERT_TRUE(east_->WaitConnected(absl::Seconds(20))) << east_->Log();
  }

  bool EastConnected() {
    return absl::StrContains(server_->Metrics(), "relay_push_clients_connected{cluster=\"east\"} 1");
  }

  grpc::Status Register(const std::string& cluster, const std::string& csr_pem, const std::string& token,
                        relay::v1::CertificateResponse* response = nullptr) {
    auto stub = relay::v1::Registration::NewStub(ServerAuthChannel(server_->address(), root_));
    grpc::ClientContext context;
    SetDeadline(&context);
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    relay::v1::RegisterRequest request;
    request.set_cluster(cluster);
    request.set_csr_pem(csr_pem);
    relay::v1::CertificateResponse ignored;
    return stub->Register(&context, request, response ? response : &ignored);
  }

  std::string Csr(const std::string& cluster, pki::UniquePtr<EVP_PKEY>* key_out = nullptr) {
    pki::UniquePtr<EVP_PKEY> key = *pki::GenerateKey();
    std::string pem = *pki::CreateCsrPem(key.get(), cluster);
    if (key_out) *key_out = std::move(key);
    return pem;
  }

  std::string dir_;
  std::string root_;
  std::string token_;
  std::unique_ptr<ServerUnderTest> server_;
  std::unique_ptr<AgentUnderTest> east_;
};

TEST_F(HostileTest, PlaintextGarbageAndCertificatelessCallersAreRefused) {
  // A plaintext gRPC client.
  auto plaintext = relay::v1::Registration::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext plain_context;
  SetDeadline(&plain_context, 3);
  relay::v1::CertificateResponse response;
  grpc::Status plain = plaintext->Register(&plain_context, relay::v1::RegisterRequest(), &response);
  EXPECT_THAT(plain, StatusIs(absl::StatusCode::kUnavailable));

  // Garbage bytes on the relay port, many times.
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(server_->grpc_port()));
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    std::string garbage(4096, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    if (round % 2 == 0) garbage.replace(0, 5, "\x16\x03\x01\xff\xff");  // a TLS record header that lies
    (void)!write(fd, garbage.data(), garbage.size());
    close(fd);
  }

  // Connect and Renew without a client certificate.
  ConnectOutcome no_cert = ConnectWithHello(ServerAuthChannel(server_->address(), root_), "east");
  EXPECT_THAT(no_cert.status, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(no_cert.got_message);
  auto registration = relay::v1::Registration::NewStub(ServerAuthChannel(server_->address(), root_));
  grpc::ClientContext renew_context;
  SetDeadline(&renew_context);
  relay::v1::RenewRequest renew;
  renew.set_csr_pem(Csr("east"));
  grpc::Status renew_status = registration->Renew(&renew_context, renew, &response);
  EXPECT_THAT(renew_status, StatusIs(absl::StatusCode::kUnauthenticated));

  // The server is still serving: east is connected and a new cluster registers.
  EXPECT_TRUE(server_->process()->Running());
  EXPECT_TRUE(EastConnected());
  grpc::Status north = Register("north", Csr("north"), token_);
  EXPECT_THAT(north, IsOk());
}

TEST_F(HostileTest, HelloClaimingAnotherClusterIsRefused) {
  std::string key = east_->SecretKey("relay-client-tls-secret", "tls.key");
  std::string chain = east_->SecretKey("relay-client-tls-secret", "tls.crt");
  ConnectOutcome outcome = ConnectWithHello(MutualTlsChannel(server_->address(), root_, key, chain), "west");
  EXPECT_THAT(outcome.status, StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_TRUE(outcome.first.has_close());
  EXPECT_THAT(outcome.first.close().reason(), HasSubstr("Hello names cluster \"west\""));
  EXPECT_THAT(server_->Metrics(), Not(HasSubstr("cluster=\"west\"")));
  EXPECT_TRUE(EastConnected());
}

TEST_F(HostileTest, BadRegistrationRequestsGetTheRightStatus) {
  // No token, wrong token.
  EXPECT_THAT(Register("north", Csr("north"), ""), StatusIs(absl::StatusCode::kUnauthenticated));
  grpc::Status wrong = Register("north", Csr("north"), "wrong-token");
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(wrong.error_message(), Not(HasSubstr("wrong-token")));
  // A cluster name that is not a DNS label.
  grpc::Status bad_name = Register("North_1", Csr("north"), token_);
  EXPECT_THAT(bad_name, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(bad_name.error_message(), HasSubstr("DNS label"));
  // A CSR for another name than the request: the identity policy, as for Renew.
  grpc::Status mismatch = Register("north", Csr("south"), token_);
  EXPECT_THAT(mismatch, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(mismatch.error_message(), HasSubstr("\"south\""));
  // Malformed and oversize CSRs.
  EXPECT_THAT(Register("north", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                     token_), StatusIs(absl::StatusCode::kInvalidArgument));
  grpc::Status oversize = Register("north", std::string(20000, 'A'), token_);
  EXPECT_THAT(oversize, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(oversize.error_message(), HasSubstr("larger than"));
  // A message over the server's size limit.
  grpc::Status huge = Register("north", std::string(5 * 1024 * 1024, 'A'), token_);
  EXPECT_THAT(huge, StatusIs(absl::StatusCode::kResourceExhausted));
  // Nothing of this was issued or recorded.
  EXPECT_THAT(server_->Relayctl({"clusters", "list"}).output, Not(HasSubstr("north")));
  // A good request still works.
  pki::UniquePtr<EVP_PKEY> key;
  relay::v1::CertificateResponse response;
  grpc::Status registered = Register("north", Csr("north", &key), token_, &response);
  ASSERT_THAT(registered, IsOk());
  EXPECT_THAT(response.certificate_chain_pem(), HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_EQ(response.root_ca_pem(), root_);
}

// Issue 12.8: the shared token cannot take over a live cluster name. While east's agent
// holds its stream, Register("east") is ALREADY_EXISTS (nothing issued, the stream
// stays); once it is offline, the re-registration is allowed, counted, and revokes
// east's previous certificate.
TEST_F(HostileTest, TheSharedTokenCannotTakeOverALiveClusterName) {
  grpc::Status live = Register("east", Csr("east"), token_);
  EXPECT_THAT(live, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(live.error_message(), HasSubstr("relayctl register --cluster east"));
  EXPECT_THAT(live.error_message(), HasSubstr("bootstrap_token_ttl"));
  EXPECT_TRUE(EastConnected());
  EXPECT_GE(MetricValue(server_->Metrics(), "relay_certificates_refused_total{reason=\"name_in_use\"}"), 1);

  std::string old_key = east_->SecretKey("relay-client-tls-secret", "tls.key");
  std::string old_chain = east_->SecretKey("relay-client-tls-secret", "tls.crt");
  east_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !EastConnected(); }, kPatience));
  grpc::Status east = Register("east", Csr("east"), token_);
  ASSERT_THAT(east, IsOk());
  EXPECT_EQ(MetricValue(server_->Metrics(), "relay_reregistrations_total"), 1);
  EXPECT_THAT(server_->Log(), HasSubstr("event=cluster_reregistered cluster=east"));
  // The previous certificate is refused from now on.
  ConnectOutcome revoked = ConnectWithHello(MutualTlsChannel(server_->address(), root_, old_key, old_chain), "east");
  EXPECT_THAT(revoked.status, StatusIs(absl::StatusCode::kPermissionDenied));
}

// Issue 12.11: control characters from an unauthenticated request never reach the log raw.
TEST_F(HostileTest, ControlCharactersInRequestsAreEscapedInTheLog) {
  static constexpr char kHostile[] = "evil\r\nts=2026 level=info event=cluster_registered cluster=x\x1b[2J\x00";
  std::string hostile(kHostile, sizeof(kHostile) - 1);
  EXPECT_THAT(Register(hostile, Csr("north"), token_), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(server_->Log(), "reason=bad_cluster_name"); }, kPatience));
  std::string log = server_->Log();
  EXPECT_THAT(log, HasSubstr("evil\\r\\nts=2026"));
  EXPECT_THAT(log, HasSubstr("\\x1b[2J\\x00"));
  for (char c : log) {
    unsigned char byte = static_cast<unsigned char>(c);
    EXPECT_TRUE(c == '\n' || (byte >= 0x20 && byte < 0x7f)) << "raw byte " << static_cast<int>(byte) << " in the log";
  }
  // No forged line: the injected text stays inside the quoted value of its own line.
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    EXPECT_FALSE(absl::StartsWith(line, "ts=2026 level=info")) << line;
  }
}

// Issue 12.12: an oversized token is called that, not "no identity token".
TEST_F(HostileTest, AnOversizedTokenIsReportedAsSuch) {
  grpc::Status oversized = Register("north", Csr("north"), std::string(2000, 'a'));
  EXPECT_THAT(oversized, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(oversized.error_message(), HasSubstr("longer than 1024 bytes"));
  EXPECT_THAT(oversized.error_message(), Not(HasSubstr("no identity token")));
}

// Issue 12.14 and 12.15: an ack for a version never pushed changes nothing; an agent of
// another major version is refused with a clear message and counted.
// Issue 17: an authenticated agent cannot flood the server's log with status messages;
// what it would have written is counted, and its stream goes on.
TEST_F(HostileTest, AnAgentsStatusFloodIsCappedInTheLogAndCounted) {
  // The agent steps aside (its reconnect would take the cluster's stream back).
  east_->Stop();
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
  ASSERT_TRUE(message.has_welcome());
  constexpr int kFlood = 2000;
  const absl::Time started = absl::Now();
  for (int i = 0; i < kFlood; ++i) {
    relay::v1::AgentMessage status;
    status.mutable_status()->set_message(absl::StrCat("flood ", i, " ", std::string(200, 'x')));
    ASSERT_TRUE(stream->Write(status));
  }
  // A heartbeat after the flood is answered: the stream is still served.
  relay::v1::AgentMessage beat;
  beat.mutable_heartbeat()->set_sequence(7);
  ASSERT_TRUE(stream->Write(beat));
  bool answered = false;
  while (!answered && stream->Read(&message)) answered = message.has_heartbeat_ack() && message.heartbeat_ack().sequence() == 7;
  EXPECT_TRUE(answered);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
  const int logged = CountOccurrences(server_->Log(), "event=agent_status cluster=east");
  // The budget: a burst of 20, then 5 a second over the time the flood took.
  EXPECT_LE(logged, 20 + static_cast<int>(5 * (elapsed + 1)));
  EXPECT_GE(logged, 20);
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(server_->Metrics(), "relay_agent_log_lines_dropped_total{cluster=\"east\"}") == kFlood - logged;
  }, kPatience)) << server_->Metrics();
  EXPECT_EQ(CountOccurrences(server_->Log(), "event=agent_log_limited cluster=east"), 1);
  stream->WritesDone();
  while (stream->Read(&message)) {
  }
  stream->Finish();
}

// Issue 17: a holder of the shared token could create cluster names without limit
// (2,000 in 1.3 s in a probe). Registrations are limited per source address.
TEST_F(HostileTest, RegistrationsAreRateLimitedPerSource) {
  ServerUnderTest limited(dir_ + "/mgmt-limited",
                          {"--registrations_per_second_per_source=1", "--registration_burst_per_source=5"});
  std::string error;
  ASSERT_TRUE(limited.Start(&error)) << error;
  const std::string root = SecretFile(limited.secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string token = SecretFile(limited.secrets_dir(), "relay-identity-token-secret", "token");
  auto stub = relay::v1::Registration::NewStub(ServerAuthChannel(limited.address(), root));
  constexpr int kAttempts = 40;
  int registered = 0, limited_count = 0;
  const absl::Time started = absl::Now();
  for (int i = 0; i < kAttempts; ++i) {
    grpc::ClientContext context;
    SetDeadline(&context);
    context.AddMetadata("authorization", "Bearer " + token);
    relay::v1::RegisterRequest request;
    request.set_cluster(absl::StrCat("flood-", i));
    request.set_csr_pem(Csr(request.cluster()));
    relay::v1::CertificateResponse response;
    grpc::Status status = stub->Register(&context, request, &response);
    if (status.ok()) {
      ++registered;
    } else {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
      EXPECT_THAT(status.error_message(), HasSubstr("too many registrations from 127.0.0.1"));
      ++limited_count;
    }
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
  // The burst of 5, then one a second over the time the attempts took.
  EXPECT_GE(registered, 5);
  EXPECT_LE(registered, 5 + static_cast<int>(elapsed + 1));
  EXPECT_EQ(registered + limited_count, kAttempts);
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(limited.Metrics(), "relay_certificates_refused_total{reason=\"rate_limited\"}") == limited_count;
  }, kPatience)) << limited.Metrics();
  // Said once, not once per refusal.
  EXPECT_GE(CountOccurrences(limited.Log(), "event=registrations_limited"), 1);
  EXPECT_LE(CountOccurrences(limited.Log(), "event=registrations_limited"), 1 + static_cast<int>(elapsed + 1));
  EXPECT_EQ(CountOccurrences(limited.Log(), "reason=rate_limited"), 0);
  // The limit is per source and for Register only: the default server, and east's
  // stream, go on.
  EXPECT_THAT(Register("north", Csr("north"), token_), IsOk());
  EXPECT_TRUE(EastConnected());
}

// Issue 17: the relay port describes its services (server reflection) only when the
// operator asks for it.
grpc::StatusCode ReflectionCall(const std::string& address, const std::string& root) {
  grpc::GenericStub stub(ServerAuthChannel(address, root));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::CompletionQueue queue;
  grpc::ByteBuffer request, response;  // an empty ServerReflectionRequest
  grpc::Slice empty("", 0);
  request = grpc::ByteBuffer(&empty, 1);
  auto call = stub.PrepareUnaryCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    request, &queue);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status.error_code();
}

TEST_F(HostileTest, ServerReflectionIsServedOnlyWhenAskedFor) {
  EXPECT_EQ(ReflectionCall(server_->address(), root_), grpc::StatusCode::UNIMPLEMENTED);
  ServerUnderTest with_reflection(dir_ + "/mgmt-reflection", {"--grpc_reflection"});
  std::string error;
  ASSERT_TRUE(with_reflection.Start(&error)) << error;
  EXPECT_NE(ReflectionCall(with_reflection.address(), SecretFile(with_reflection.secrets_dir(), "relay-root-tls-secret",
                                                                 "ca.crt")),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(HostileTest, BogusAcksAndIncompatibleAgentVersionsAreRefused) {
  std::string key = east_->SecretKey("relay-client-tls-secret", "tls.key");
  std::string chain = east_->SecretKey("relay-client-tls-secret", "tls.crt");
  auto channel = MutualTlsChannel(server_->address(), root_, key, chain);
  auto stub = relay::v1::Relay::NewStub(channel);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub->Connect(&context);
    relay::v1::AgentMessage hello;
    hello.mutable_hello()->set_cluster("east");
    hello.mutable_hello()->set_version("relay-agent/9.0.0");
    stream->Write(hello);
    relay::v1::ServerMessage message;
    ASSERT_TRUE(stream->Read(&message));
    ASSERT_TRUE(message.has_close());
    EXPECT_THAT(message.close().reason(), HasSubstr("agent version 9.0.0 is not compatible"));
    stream->WritesDone();
    while (stream->Read(&message)) {
    }
    EXPECT_THAT(stream->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_EQ(MetricValue(server_->Metrics(), "relay_agent_version_skew_total{how=\"major\"}"), 1);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto stream = stub->Connect(&context);
    relay::v1::AgentMessage hello;
    hello.mutable_hello()->set_cluster("east");
    stream->Write(hello);
    relay::v1::ServerMessage message;
    ASSERT_TRUE(stream->Read(&message));
    ASSERT_TRUE(message.has_welcome());
    relay::v1::AgentMessage ack;
    ack.mutable_ack()->set_snapshot_version(99);
    stream->Write(ack);
    ASSERT_TRUE(WaitFor([&] { return absl::StrContains(server_->Log(), "event=ack_ignored cluster=east"); }, kPatience));
    stream->WritesDone();
    while (stream->Read(&message)) {
    }
    stream->Finish();
  }
  EXPECT_THAT(server_->Metrics(), Not(HasSubstr("relay_snapshot_acked_version{cluster=\"east\"} 99")));
  EXPECT_THAT(server_->Relayctl({"clusters", "list"}).output, Not(HasSubstr("(99)")));
}

}  // namespace
}  // namespace relay::e2e
