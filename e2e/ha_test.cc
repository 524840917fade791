// Several management servers on one etcd (Debian's etcd-server, started by the test):
// real server and agent processes, real etcd, on 127.0.0.1.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/status_matchers.h"
#include "common/unix_socket_path.h"
#include "e2e/harness.h"
#include "e2e/openssl_pki.h"
#include "e2e/relay_client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "state/etcd_testing.h"

namespace relay::e2e {
namespace {

using ::relay::testing::IsOk;
using ::testing::HasSubstr;

// A fresh key, its CSR for `cluster`, and what Register answered with it.
struct Registered {
  grpc::Status status;
  std::string key_pem;
  relay::v1::CertificateResponse response;
};
Registered RegisterFresh(relay::v1::Registration::Stub& stub, const std::string& token, const std::string& cluster) {
  Registered registered;
  auto key = pki::GenerateKey();
  registered.key_pem = *pki::PrivateKeyToPem(key->get());
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  context.AddMetadata("authorization", "Bearer " + token);
  relay::v1::RegisterRequest request;
  request.set_cluster(cluster);
  request.set_csr_pem(*pki::CreateCsrPem(key->get(), cluster));
  registered.status = stub.Register(&context, request, &registered.response);
  return registered;
}

// Register `cluster` with `token` (shared or bootstrap) and a fresh key's CSR.
grpc::Status RegisterWithToken(relay::v1::Registration::Stub& stub, const std::string& token,
                               const std::string& cluster) {
  return RegisterFresh(stub, token, cluster).status;
}

class HaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("ha");
    absl::StatusOr<std::unique_ptr<state::testing::EtcdUnderTest>> etcd =
        state::testing::EtcdUnderTest::Start(EtcdMembers());
    ASSERT_THAT(etcd, IsOk());
    etcd_ = *std::move(etcd);
    WriteFile(dir_ + "/state.key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n");
  }

  virtual int EtcdMembers() const { return 1; }

  std::vector<std::string> ReplicaFlags() const {
    return {"--state=etcd", "--etcd_endpoints=" + etcd_->endpoints(),
            "--state_encryption_key_file=" + dir_ + "/state.key",
            // The bootstrap token races register 1,000 times from 127.0.0.1.
            "--registrations_per_second_per_source=0"};
  }

  std::unique_ptr<ServerUnderTest> Replica(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = ReplicaFlags();
    flags.insert(flags.end(), extra.begin(), extra.end());
    return std::make_unique<ServerUnderTest>(dir_ + "/" + name, flags);
  }

  // (The socket path may be longer than a Unix socket address takes: reached through
  // its directory, as relayctl does.)
  static std::unique_ptr<relay::v1::Admin::Stub> Admin(const ServerUnderTest& server,
                                                       std::optional<UnixSocketPath>* hold) {
    absl::StatusOr<UnixSocketPath> path = UnixSocketPath::For(server.admin_socket());
    EXPECT_THAT(path, IsOk());
    if (!path.ok()) return nullptr;
    *hold = *std::move(path);
    return relay::v1::Admin::NewStub(
        grpc::CreateChannel("unix:" + (*hold)->usable(), grpc::InsecureChannelCredentials()));
  }

  std::string dir_;
  std::unique_ptr<state::testing::EtcdUnderTest> etcd_;
};

// Replicas started at once on an empty etcd make one root, one intermediate, one token:
// the others load them, and all serve the same server certificate.
TEST_F(HaTest, ReplicasStartedAtOnceShareOnePki) {
  std::vector<std::unique_ptr<ServerUnderTest>> replicas;
  for (const char* name : {"a", "b", "c"}) replicas.push_back(Replica(name));
  std::vector<std::thread> starting;
  std::vector<std::string> errors(replicas.size());
  std::atomic<int> started{0};
  for (size_t i = 0; i < replicas.size(); ++i) {
    starting.emplace_back([&, i] { started += replicas[i]->Start(&errors[i]) ? 1 : 0; });
  }
  for (std::thread& thread : starting) thread.join();
  ASSERT_EQ(started, 3) << errors[0] << errors[1] << errors[2];

  int roots_created = 0;
  for (const auto& replica : replicas) {
    roots_created += CountOccurrences(replica->Log(), "secret_created secret=gloo-mesh/relay-root-tls-secret");
  }
  EXPECT_EQ(roots_created, 1);
  const std::string root = SecretFile(replicas[0]->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string token = SecretFile(replicas[0]->secrets_dir(), "relay-identity-token-secret", "token");
  ASSERT_FALSE(root.empty());
  ASSERT_FALSE(token.empty());
  for (const auto& replica : replicas) {
    EXPECT_EQ(SecretFile(replica->secrets_dir(), "relay-root-tls-secret", "ca.crt"), root);
    EXPECT_EQ(SecretFile(replica->secrets_dir(), "relay-identity-token-secret", "token"), token);
    // The CA keys stay in etcd, sealed; the replica's directory has only what it serves.
    EXPECT_EQ(SecretFile(replica->secrets_dir(), "relay-root-tls-secret", "tls.key"), "");
    EXPECT_EQ(SecretFile(replica->secrets_dir(), "relay-tls-signing-secret", "tls.key"), "");
  }
  // Several may have issued a server certificate at start; the last one written is
  // the one every replica serves.
  EXPECT_TRUE(WaitFor(
      [&] {
        std::set<std::string> served;
        for (const auto& replica : replicas) {
          served.insert(SecretFile(replica->secrets_dir(), "relay-server-tls-secret", "tls.crt"));
        }
        return served.size() == 1;
      },
      kPatience));
  // One of them is elected to run once-only work; when it stops, another takes over.
  auto leaders = [&] {
    std::vector<int> leading;
    for (size_t i = 0; i < replicas.size(); ++i) {
      if (replicas[i]->process()->Running() &&
          MetricValue(replicas[i]->Metrics(), "relay_housekeeping_leader") == 1) {
        leading.push_back(static_cast<int>(i));
      }
    }
    return leading;
  };
  ASSERT_TRUE(WaitFor([&] { return leaders().size() == 1; }, kPatience));
  const int first_leader = leaders()[0];
  replicas[first_leader]->Stop();
  EXPECT_TRUE(WaitFor([&] { return leaders().size() == 1 && leaders()[0] != first_leader; }, kPatience));
  ASSERT_TRUE(replicas[first_leader]->Start(&errors[0])) << errors[0];
  std::string sealed = state::testing::ReadEtcdValue(*etcd_, "/relay/gloo-mesh/s/gloo-mesh/relay-tls-signing-secret");
  EXPECT_TRUE(absl::StartsWith(sealed, "relay:enc:aesgcm:v1:"));
  EXPECT_FALSE(absl::StrContains(sealed, "PRIVATE KEY"));

  // An agent registered through one replica is served by the others.
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(*replicas[0], dir_, "east");
  agent->Stop();
  AgentUnderTest moved("east", dir_ + "/east", replicas[2]->address());
  moved.Start();
  EXPECT_TRUE(moved.WaitConnected(kPatience)) << moved.Log();
  // (Both runs write the same log: one registration in all.)
  EXPECT_EQ(CountOccurrences(moved.Log(), "credentials_registered"), 1) << moved.Log();
}

// The elected replica compacts etcd's history, one interval behind (here 1 s).
TEST_F(HaTest, TheLeaderCompactsEtcdsHistory) {
  std::unique_ptr<ServerUnderTest> replica = Replica("a", {"--etcd_compaction_interval=1s"});
  std::string error;
  ASSERT_TRUE(replica->Start(&error)) << error;
  EXPECT_TRUE(WaitFor([&] { return state::testing::EtcdCompactedPast(*etcd_, 2); }, kPatience)) << replica->Log();
  EXPECT_EQ(CountOccurrences(replica->Log(), "etcd_compaction_failed"), 0) << replica->Log();
}

TEST_F(HaTest, WithoutAKeyFileTheReplicaRefusesToStoreSecretsInTheClear) {
  ServerUnderTest server(dir_ + "/plain", {"--state=etcd", "--etcd_endpoints=" + etcd_->endpoint()});
  std::string error;
  EXPECT_FALSE(server.Start(&error));
  EXPECT_THAT(error, HasSubstr("--state_encryption_key_file"));
  EXPECT_THAT(error, HasSubstr("--state_plaintext_secrets"));
  EXPECT_EQ(state::testing::ReadEtcdValue(*etcd_, "/relay/gloo-mesh/s/gloo-mesh/relay-root-tls-secret"), "");
}

// Two replicas race for every bootstrap token: each use is consumed exactly once.
// An intermediate rotated through one replica reaches the other from etcd: an agent of
// the other replica renews under the new one, its stream up throughout.
TEST_F(HaTest, AnIntermediateRotatedOnOneReplicaIsAdoptedByTheOthers) {
  std::unique_ptr<ServerUnderTest> a = Replica("a", {"--client_cert_ttl=4s"});
  std::unique_ptr<ServerUnderTest> b = Replica("b", {"--client_cert_ttl=4s"});
  std::string error;
  ASSERT_TRUE(a->Start(&error)) << error;
  ASSERT_TRUE(b->Start(&error)) << error;
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(*b, dir_, "east", {"--rotation=builtin"});
  auto issuer_serial = [&] {
    auto chain = pki::ParseCertificateChainPem(agent->SecretKey("relay-client-tls-secret", "tls.crt"));
    return chain.ok() && chain->size() > 1 ? pki::SerialHex((*chain)[1].get()) : std::string();
  };
  const std::string before = issuer_serial();
  ASSERT_FALSE(before.empty());
  CommandResult rotated = a->Relayctl({"ca", "rotate-intermediate"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output;
  // "new intermediate <serial> valid until ..."
  const std::string serial = rotated.output.substr(17, rotated.output.find(' ', 17) - 17);
  ASSERT_NE(serial, before);
  EXPECT_TRUE(WaitFor([&] { return issuer_serial() == serial; }, kPatience)) << agent->Log() << b->Log();
  CommandResult status = b->Relayctl({"ca", "status"});
  EXPECT_THAT(status.output, HasSubstr(serial)) << status.output;
  EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_heartbeats_unanswered_total"), 0) << agent->Log();
  EXPECT_EQ(CountOccurrences(agent->Log(), "event=relay_closed_by_server"), 0) << agent->Log();
}

// A root rotation asked of one replica runs to its end with agents on both: the elected
// replica drives it, every replica pushes the bundles to its own streams and asks them to
// renew once it issues under the new root.
TEST_F(HaTest, ARootRotationRunsAcrossReplicasWithAgentsOnEach) {
  std::unique_ptr<ServerUnderTest> a = Replica("a", {"--client_cert_ttl=1h", "--renew_now_window=3s"});
  std::unique_ptr<ServerUnderTest> b = Replica("b", {"--client_cert_ttl=1h", "--renew_now_window=3s"});
  std::string error;
  ASSERT_TRUE(a->Start(&error)) << error;
  ASSERT_TRUE(b->Start(&error)) << error;
  std::vector<std::unique_ptr<AgentUnderTest>> agents;
  for (const char* cluster : {"east", "west"}) agents.push_back(StartConnectedAgent(*a, dir_, cluster, {"--rotation=builtin"}));
  for (const char* cluster : {"north", "south"}) agents.push_back(StartConnectedAgent(*b, dir_, cluster, {"--rotation=builtin"}));
  const std::string root_a = SecretFile(a->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  CommandResult started = b->Relayctl({"ca", "rotate-root"});
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(a->Relayctl({"ca", "status"}).output, ": phase done"); },
                      absl::Seconds(60)))
      << a->Relayctl({"ca", "status"}).output << a->Log() << b->Log();
  for (const auto& replica : {a.get(), b.get()}) {
    EXPECT_TRUE(WaitFor([&] {
      const std::string bundle = SecretFile(replica->secrets_dir(), "relay-root-tls-secret", "ca.crt");
      return !bundle.empty() && bundle != root_a && CountOccurrences(bundle, "BEGIN CERTIFICATE") == 1;
    }, kPatience)) << replica->Log();
    EXPECT_EQ(CountOccurrences(replica->Log(), "event=renew_now_pushed"), 1) << replica->Log();
  }
  const std::string root_b = SecretFile(a->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  for (const auto& agent : agents) {
    EXPECT_TRUE(WaitFor([&] { return agent->SecretKey("relay-root-tls-secret", "ca.crt") == root_b; }, kPatience))
        << agent->Log();
    auto chain = pki::ParseCertificateChainPem(agent->SecretKey("relay-client-tls-secret", "tls.crt"));
    auto roots = pki::ParseCertificateChainPem(root_b);
    ASSERT_TRUE(chain.ok() && roots.ok());
    EXPECT_TRUE(pki::VerifyChain((*chain)[0].get(), pki::Borrow(*chain), pki::Borrow(*roots), absl::Now(),
                                 pki::Purpose::kClientAuth).ok())
        << agent->Log();
    EXPECT_TRUE(agent->WaitConnected(kPatience)) << agent->Log();
    EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_heartbeats_unanswered_total"), 0) << agent->Log();
  }
}

TEST_F(HaTest, ReplicasRacingForBootstrapTokensConsumeEachUseOnce) {
  std::unique_ptr<ServerUnderTest> a = Replica("a");
  std::unique_ptr<ServerUnderTest> b = Replica("b");
  std::string error;
  ASSERT_TRUE(a->Start(&error)) << error;
  ASSERT_TRUE(b->Start(&error)) << error;
  const std::string root = SecretFile(a->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  // In rounds: a server keeps at most 64 live bootstrap tokens.
  constexpr int kRounds = 25;
  constexpr int kRacesPerRound = 40;  // 1,000 races in all
  constexpr int kWorkers = 4;
  std::optional<UnixSocketPath> admin_path;
  auto admin = Admin(*a, &admin_path);
  ASSERT_TRUE(admin);
  auto register_a = relay::v1::Registration::NewStub(ServerAuthChannel(a->address(), root));
  auto register_b = relay::v1::Registration::NewStub(ServerAuthChannel(b->address(), root));
  std::atomic<int> double_spends{0}, unspent{0}, errors{0};
  absl::Mutex error_mu;
  std::string first_error;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::string> tokens(kRacesPerRound);
    for (int i = 0; i < kRacesPerRound; ++i) {
      grpc::ClientContext context;
      SetDeadline(&context);
      relay::v1::CreateBootstrapTokenRequest request;
      request.set_cluster(absl::StrCat("race-", round, "-", i));
      request.set_ttl_seconds(3600);
      request.set_uses(1);
      relay::v1::CreateBootstrapTokenResponse response;
      ASSERT_THAT(admin->CreateBootstrapToken(&context, request, &response), IsOk());
      tokens[i] = response.token();
    }
    std::vector<std::thread> workers;
    for (int worker = 0; worker < kWorkers; ++worker) {
      workers.emplace_back([&, worker] {
        for (int i = worker; i < kRacesPerRound; i += kWorkers) {
          const std::string cluster = absl::StrCat("race-", round, "-", i);
          std::atomic<int> won{0};
          auto attempt = [&](relay::v1::Registration::Stub* stub) {
            grpc::Status status = RegisterWithToken(*stub, tokens[i], cluster);
            if (status.ok()) {
              won++;
            } else if (status.error_code() != grpc::StatusCode::UNAUTHENTICATED &&
                       status.error_code() != grpc::StatusCode::PERMISSION_DENIED &&
                       status.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
              errors++;
              absl::MutexLock lock(&error_mu);
              if (first_error.empty()) first_error = absl::StrCat(status.error_code(), ": ", status.error_message());
            }
          };
          std::thread on_b([&] { attempt(register_b.get()); });
          attempt(register_a.get());
          on_b.join();
          if (won > 1) double_spends++;
          if (won == 0) unspent++;
        }
      });
    }
    for (std::thread& worker : workers) worker.join();
  }
  EXPECT_EQ(double_spends, 0);
  EXPECT_EQ(errors, 0) << first_error;
  EXPECT_EQ(unspent, 0) << first_error;
}

// Agents know both replicas. The one that holds them is killed: they all come back on
// the other with the certificates they have (none registers again), and an operator's
// push and deregistration through either replica reach them.
TEST_F(HaTest, AgentsOfAKilledReplicaMoveToAnotherWithoutRegisteringAgain) {
  std::unique_ptr<ServerUnderTest> a = Replica("a");
  std::unique_ptr<ServerUnderTest> b = Replica("b");
  std::string error;
  ASSERT_TRUE(a->Start(&error)) << error;
  ASSERT_TRUE(b->Start(&error)) << error;
  constexpr int kAgents = 100;
  std::vector<std::unique_ptr<AgentUnderTest>> agents;
  for (int i = 0; i < kAgents; ++i) {
    std::string cluster = absl::StrCat("c", i);
    std::string store = dir_ + "/" + cluster;
    CommandResult registered = a->Relayctl({"register", "--cluster=" + cluster, "--secrets_dir=" + store});
    ASSERT_EQ(registered.exit_code, 0) << registered.output;
    // Everyone starts on A (the list is shuffled, so list only A until they are up).
    agents.push_back(std::make_unique<AgentUnderTest>(cluster, store, a->address() + "," + b->address()));
  }
  b->Stop();
  for (auto& agent : agents) agent->Start();
  for (auto& agent : agents) ASSERT_TRUE(agent->WaitConnected(kPatience)) << agent->Log();
  ASSERT_TRUE(b->Start(&error)) << error;
  // B lists the streams A holds.
  EXPECT_TRUE(WaitFor([&] { return ::testing::Matches(::testing::ContainsRegex("\nc0 +yes +yes"))(
                                b->Relayctl({"clusters", "list"}).output); },
                      kPatience))
      << b->Relayctl({"clusters", "list"}).output;

  a->process()->Signal(SIGKILL);
  a->process()->Wait(kPatience);
  auto connected_to_b = [&] {
    std::string metrics = b->Metrics();
    for (int i = 0; i < kAgents; ++i) {
      if (!absl::StrContains(metrics, absl::StrCat("relay_push_clients_connected{cluster=\"c", i, "\"} 1"))) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(WaitFor(connected_to_b, kPatience)) << b->Metrics();
  for (auto& agent : agents) {
    EXPECT_EQ(CountOccurrences(agent->Log(), "credentials_registered"), 1) << agent->Log();
  }
  // A crashed leader is replaced once its lease (15 s) has run out.
  EXPECT_TRUE(WaitFor([&] { return MetricValue(b->Metrics(), "relay_housekeeping_leader") == 1; }, kPatience))
      << b->Log();

  // A returns; an operator acts through A on agents that are connected to B.
  ASSERT_TRUE(a->Start(&error)) << error;
  // The shared token cannot take over a name that is live on another replica.
  const std::string root = SecretFile(a->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string token = SecretFile(a->secrets_dir(), "relay-identity-token-secret", "token");
  auto stub = relay::v1::Registration::NewStub(ServerAuthChannel(a->address(), root));
  grpc::Status taken = RegisterWithToken(*stub, token, "c2");
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS) << taken.error_message();
  WriteFile(dir_ + "/policy.yaml", "pushed through a");
  CommandResult pushed = a->Relayctl({"push", "--cluster=c0", dir_ + "/policy.yaml"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  EXPECT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agents[0]->output_dir() + "/policy.yaml") == "pushed through a"; },
                      kPatience))
      << agents[0]->Log();
  CommandResult deregistered = a->Relayctl({"clusters", "deregister", "c1"});
  ASSERT_EQ(deregistered.exit_code, 0) << deregistered.output;
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(agents[1]->Log(), "cluster deregistered"); }, kPatience))
      << agents[1]->Log();
}

// etcd as production runs it: TLS only, client certificates required, both made with
// the openssl command line as an operator (or kubeadm) makes them. A replica given
// --etcd_ca_file, --etcd_cert_file and --etcd_key_file serves; one given none is refused
// at start-up, and told about the TLS flags.
TEST(HaTlsTest, AReplicaReachesATlsEtcdWithTheEtcdTlsFlags) {
  const std::string dir = MakeTempDir("ha-tls");
  OpensslPki pki(dir);
  std::string error;
  ASSERT_TRUE(pki.MakeRoot("etcd-ca", &error)) << error;
  ASSERT_TRUE(pki.Issue("etcd-server", "etcd-ca",
                        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
                        &error))
      << error;
  ASSERT_TRUE(pki.MakeClient("relay-mgmt", "etcd-ca", "relay-mgmt", &error)) << error;
  state::testing::EtcdTlsFiles tls{pki.Path("etcd-ca.crt"), pki.Path("etcd-server.crt"), pki.Path("etcd-server.key"),
                                   pki.Path("relay-mgmt.crt"), pki.Path("relay-mgmt.key")};
  absl::StatusOr<std::unique_ptr<state::testing::EtcdUnderTest>> etcd = state::testing::EtcdUnderTest::Start(1, &tls);
  ASSERT_THAT(etcd, IsOk());
  WriteFile(dir + "/state.key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n");
  const std::vector<std::string> flags = {"--state=etcd", "--etcd_endpoints=" + (*etcd)->endpoint(),
                                          "--state_encryption_key_file=" + dir + "/state.key"};

  ServerUnderTest refused(dir + "/plaintext", flags);
  EXPECT_FALSE(refused.Start(&error));
  EXPECT_THAT(error, HasSubstr("--etcd_ca_file"));

  std::vector<std::string> with_tls = flags;
  with_tls.insert(with_tls.end(), {"--etcd_ca_file=" + pki.Path("etcd-ca.crt"),
                                   "--etcd_cert_file=" + pki.Path("relay-mgmt.crt"),
                                   "--etcd_key_file=" + pki.Path("relay-mgmt.key")});
  ServerUnderTest server(dir + "/tls", with_tls);
  ASSERT_TRUE(server.Start(&error)) << error;
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(server, dir, "east");
  EXPECT_NE(state::testing::ReadEtcdValue(**etcd, "/relay/gloo-mesh/r/clusters/east"), "") << server.Log();
  EXPECT_NE(state::testing::ReadEtcdValue(**etcd, "/relay/gloo-mesh/s/gloo-mesh/relay-root-tls-secret"), "");
}

class HaOnThreeMembersTest : public HaTest {
 protected:
  int EtcdMembers() const override { return 3; }
};

// The etcd leader of three members is killed (SIGKILL) under two replicas, one of
// which was talking to it. Once the other two members have elected a leader, no request
// fails: registrations, renewals, tokens, pushes and deregistrations on either replica;
// and the agents' streams never dropped.
TEST_F(HaOnThreeMembersTest, KillingTheEtcdLeaderFailsNoRequestAfterTheElection) {
  absl::StatusOr<int> leader = etcd_->WaitForLeader();
  ASSERT_THAT(leader, IsOk());
  std::vector<std::string> endpoints = absl::StrSplit(etcd_->endpoints(), ',');
  std::rotate(endpoints.begin(), endpoints.begin() + *leader, endpoints.end());
  // A starts at the leader; B at a follower (the last --etcd_endpoints wins).
  std::unique_ptr<ServerUnderTest> a = Replica("a", {"--etcd_endpoints=" + absl::StrJoin(endpoints, ",")});
  std::rotate(endpoints.begin(), endpoints.begin() + 1, endpoints.end());
  std::unique_ptr<ServerUnderTest> b = Replica("b", {"--etcd_endpoints=" + absl::StrJoin(endpoints, ",")});
  std::string error;
  ASSERT_TRUE(a->Start(&error)) << error;
  ASSERT_TRUE(b->Start(&error)) << error;
  std::vector<std::unique_ptr<AgentUnderTest>> agents;
  agents.push_back(StartConnectedAgent(*a, dir_, "on-a"));
  agents.push_back(StartConnectedAgent(*b, dir_, "on-b"));

  etcd_->Kill(*leader);
  absl::StatusOr<int> next_leader = etcd_->WaitForLeader();
  ASSERT_THAT(next_leader, IsOk());
  EXPECT_NE(*next_leader, *leader);

  const std::string root = SecretFile(a->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string token = SecretFile(a->secrets_dir(), "relay-identity-token-secret", "token");
  constexpr int kClustersPerReplica = 10;
  for (ServerUnderTest* replica : {a.get(), b.get()}) {
    const std::string name = replica == a.get() ? "a" : "b";
    auto registration = relay::v1::Registration::NewStub(ServerAuthChannel(replica->address(), root));
    for (int i = 0; i < kClustersPerReplica; ++i) {
      const std::string cluster = absl::StrCat("new-", name, i);
      Registered registered = RegisterFresh(*registration, token, cluster);
      ASSERT_THAT(registered.status, IsOk()) << cluster << " on " << name;
      auto renewal = relay::v1::Registration::NewStub(MutualTlsChannel(
          replica->address(), root, registered.key_pem, registered.response.certificate_chain_pem()));
      auto key = pki::GenerateKey();
      grpc::ClientContext context;
      SetDeadline(&context, 30);
      relay::v1::RenewRequest renew;
      renew.set_csr_pem(*pki::CreateCsrPem(key->get(), cluster));
      relay::v1::CertificateResponse renewed;
      ASSERT_THAT(renewal->Renew(&context, renew, &renewed), IsOk()) << cluster << " on " << name;
    }
    CommandResult token_made = replica->Relayctl({"register", "--cluster=by-token-" + name, "--bootstrap_token_ttl=1h",
                                                  "--secrets_dir=" + dir_ + "/by-token-" + name});
    EXPECT_EQ(token_made.exit_code, 0) << token_made.output;
    WriteFile(dir_ + "/policy-" + name + ".yaml", "pushed through " + name);
    for (const char* cluster : {"on-a", "on-b"}) {
      CommandResult pushed = replica->Relayctl({"push", absl::StrCat("--cluster=", cluster),
                                                dir_ + "/policy-" + name + ".yaml"});
      EXPECT_EQ(pushed.exit_code, 0) << pushed.output;
    }
    CommandResult deregistered = replica->Relayctl({"clusters", "deregister", "new-" + name + "0"});
    EXPECT_EQ(deregistered.exit_code, 0) << deregistered.output;
  }
  for (auto& agent : agents) {
    EXPECT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agent->output_dir() + "/policy-b.yaml") == "pushed through b"; },
                        kPatience))
        << agent->Log();
    EXPECT_EQ(CountOccurrences(agent->Log(), "relay_connected"), 1) << agent->Log();
  }
}

// etcd goes away: the streams that are up stay up and their heartbeats are answered;
// what must write is refused with UNAVAILABLE naming etcd; when etcd is back, all of
// it works again without restarting anything.
TEST_F(HaTest, WhileEtcdIsAwayStreamsStayUpAndWritesSayWhy) {
  std::unique_ptr<ServerUnderTest> replica = Replica("a");
  std::string error;
  ASSERT_TRUE(replica->Start(&error)) << error;
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(*replica, dir_, "east");
  const std::string root = SecretFile(replica->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  const std::string token = SecretFile(replica->secrets_dir(), "relay-identity-token-secret", "token");
  auto acks = [&] { return MetricValue(agent->Metrics(), "relay_agent_heartbeat_acks_total"); };
  auto stub = relay::v1::Registration::NewStub(ServerAuthChannel(replica->address(), root));
  auto register_west = [&] { return RegisterWithToken(*stub, token, "west"); };

  etcd_->Stop();
  double acks_when_etcd_stopped = acks();
  EXPECT_TRUE(WaitFor([&] { return acks() >= acks_when_etcd_stopped + 4; }, kPatience)) << agent->Log();
  grpc::Status refused = register_west();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("etcd"));
  CommandResult deregister = replica->Relayctl({"clusters", "deregister", "east"});
  EXPECT_NE(deregister.exit_code, 0);
  EXPECT_THAT(deregister.output, HasSubstr("etcd"));
  EXPECT_EQ(CountOccurrences(agent->Log(), "relay_connected"), 1) << agent->Log();

  ASSERT_THAT(etcd_->Restart(), IsOk());
  EXPECT_TRUE(WaitFor([&] { return register_west().ok(); }, kPatience));
  WriteFile(dir_ + "/after.yaml", "etcd is back");
  EXPECT_TRUE(WaitFor([&] { return replica->Relayctl({"push", "--cluster=east", dir_ + "/after.yaml"}).exit_code == 0; },
                      kPatience));
  EXPECT_TRUE(WaitFor([&] { return ReadFileOrEmpty(agent->output_dir() + "/after.yaml") == "etcd is back"; }, kPatience))
      << agent->Log();
  EXPECT_EQ(CountOccurrences(agent->Log(), "relay_connected"), 1) << agent->Log();
  // Nothing half-written: the deregistration that failed did not happen.
  EXPECT_THAT(replica->Relayctl({"clusters", "list"}).output, ::testing::Not(HasSubstr("deregistered")));
}

// A single server's store grows into HA: `relayctl state migrate` copies it to etcd
// (twice is the same as once), and a replica on etcd serves its clusters, which keep
// their certificates.
TEST_F(HaTest, AMigratedStoreServesItsClustersWithoutRegisteringThemAgain) {
  ServerUnderTest single(dir_ + "/single");
  std::string error;
  ASSERT_TRUE(single.Start(&error)) << error;
  std::unique_ptr<AgentUnderTest> agent = StartConnectedAgent(single, dir_, "east");
  const int port = single.grpc_port();
  const std::string root = SecretFile(single.secrets_dir(), "relay-root-tls-secret", "ca.crt");

  std::vector<std::string> migrate = {RelayctlBinary(),
                                      "state",
                                      "migrate",
                                      "--from=local",
                                      "--to=etcd",
                                      "--mgmt_secrets_dir=" + single.secrets_dir(),
                                      "--etcd_endpoints=" + etcd_->endpoint(),
                                      "--state_encryption_key_file=" + dir_ + "/state.key"};
  CommandResult refused = RunCommand(migrate);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.output, HasSubstr("Stop the server"));
  single.Stop();
  CommandResult first = RunCommand(migrate);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  CommandResult again = RunCommand(migrate);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("copied 0 record(s)"));

  std::vector<std::string> flags = ReplicaFlags();
  ServerUnderTest replica(dir_ + "/replica", flags, port);
  ASSERT_TRUE(replica.Start(&error)) << error;
  EXPECT_EQ(SecretFile(replica.secrets_dir(), "relay-root-tls-secret", "ca.crt"), root);
  EXPECT_EQ(CountOccurrences(replica.Log(), "secret_created"), 0) << replica.Log();
  EXPECT_TRUE(WaitFor([&] { return CountOccurrences(agent->Log(), "relay_connected") >= 2; }, kPatience))
      << agent->Log();
  EXPECT_EQ(CountOccurrences(agent->Log(), "credentials_registered"), 1) << agent->Log();
  CommandResult list = replica.Relayctl({"clusters", "list"});
  EXPECT_THAT(list.output, HasSubstr("east")) << list.output;
}

}  // namespace
}  // namespace relay::e2e
