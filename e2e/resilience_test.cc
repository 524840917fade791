// What an operator (or an attacker) does to a running installation: run out of file
// descriptors, start a second server on the same store, damage the registry journal,
// start agents before the server, break the client secret, stop an agent mid-stream.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_matchers.h"
#include "common/tcp_testing.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secrets/directory_store.h"

namespace relay::e2e {
namespace {

using ::relay::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kClientSecret[] = "relay-client-tls-secret";

class ResilienceTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("resilience"); }

  void StartServer(std::vector<std::string> flags = {}, int open_file_limit = 0, int port = 0) {
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", flags, port);
    if (open_file_limit > 0) server_->SetOpenFileLimit(open_file_limit);
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }

  std::unique_ptr<AgentUnderTest> ConnectedAgent(const std::string& cluster) {
    return StartConnectedAgent(*server_, dir_, cluster);
  }

  bool Connected(const std::string& cluster) {
    return absl::StrContains(server_->Metrics(), absl::StrCat("relay_push_clients_connected{cluster=\"", cluster, "\"} 1"));
  }

  std::string dir_;
  std::unique_ptr<ServerUnderTest> server_;
};

// Issue 12.1 (CVE-2023-4785 in Debian's gRPC 1.51): idle TCP connections until the
// server runs out of descriptors. The relay port must accept again once they are gone,
// the open stream must survive, and /readyz must say not ready meanwhile.
TEST_F(ResilienceTest, DescriptorFloodDoesNotStopTheRelayPort) {
  ASSERT_GE(RaiseOpenFileLimit(), 1200u);
  // 256 descriptors; the idle connections would otherwise be closed after 10 s.
  StartServer({"--handshake_timeout=120s"}, 256);
  auto east = ConnectedAgent("east");
  std::string west_store = dir_ + "/west";
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=west", "--secrets_dir=" + west_store}).exit_code, 0);

  std::vector<int> flood;
  for (int i = 0; i < 600; ++i) {
    int fd = relay::testing::ConnectToLocalhost(server_->grpc_port());
    if (fd >= 0) flood.push_back(fd);
  }
  ASSERT_GT(flood.size(), 300u);
  EXPECT_TRUE(WaitFor([&] { return HttpGet(server_->health_port(), "/readyz").first == 503; }, kPatience))
      << HttpGet(server_->health_port(), "/readyz").second;
  EXPECT_THAT(HttpGet(server_->health_port(), "/readyz").second, HasSubstr("file descriptors"));
  EXPECT_EQ(HttpGet(server_->health_port(), "/healthz").first, 200);
  EXPECT_TRUE(WaitFor([&] { return MetricValue(server_->Metrics(), "relay_connections_shed_total") > 0; }, kPatience));
  // The open stream goes on: heartbeats keep being answered.
  double acks = MetricValue(east->Metrics(), "relay_agent_heartbeat_acks_total");
  EXPECT_TRUE(WaitFor([&] { return MetricValue(east->Metrics(), "relay_agent_heartbeat_acks_total") > acks + 2; }, kPatience));
  EXPECT_TRUE(Connected("east"));

  for (int fd : flood) close(fd);
  absl::Time flood_ended = absl::Now();
  AgentUnderTest west("west", west_store, server_->address());
  west.Start();
  ASSERT_TRUE(west.WaitConnected(absl::Seconds(30))) << west.Log() << server_->Log();
  std::cout << "a new agent connected " << absl::FormatDuration(absl::Now() - flood_ended)
            << " after the flood ended (agent start and registration included)\n";
  EXPECT_TRUE(WaitFor([&] { return HttpGet(server_->health_port(), "/readyz").first == 200; }, kPatience));
  EXPECT_TRUE(Connected("east"));
}

// Issue 12.3: a second server on the same store refuses to start and names the first;
// nothing of the first is disturbed (its admin socket, its port, its journal).
TEST_F(ResilienceTest, ASecondServerOnTheSameStoreRefusesAndNamesTheFirst) {
  StartServer();
  auto east = ConnectedAgent("east");
  std::string journal = ReadFileOrEmpty(dir_ + "/mgmt/relay-registry.gloo-mesh.log");

  CommandResult second = RunCommand({ServerBinary(), "--secrets_dir=" + dir_ + "/mgmt", "--grpc_address=127.0.0.1:0",
                                     "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0"});
  EXPECT_NE(second.exit_code, 0);
  EXPECT_THAT(second.output, HasSubstr(absl::StrCat("in use by process ", server_->process()->pid())));
  EXPECT_THAT(second.output, HasSubstr("--secrets_dir"));
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/mgmt/relay-registry.gloo-mesh.log"), journal);

  // Another store but the first one's admin socket: refused, and the socket stays.
  CommandResult same_socket =
      RunCommand({ServerBinary(), "--secrets_dir=" + dir_ + "/other", "--grpc_address=127.0.0.1:0",
                  "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0",
                  "--admin_socket=" + server_->admin_socket()});
  EXPECT_NE(same_socket.exit_code, 0);
  EXPECT_THAT(same_socket.output, HasSubstr("served by another process"));
  // Another store but the first one's relay port: no port sharing (SO_REUSEPORT is off).
  CommandResult same_port =
      RunCommand({ServerBinary(), "--secrets_dir=" + dir_ + "/third", "--grpc_address=" + server_->address(),
                  "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0",
                  "--admin_socket=" + dir_ + "/third.sock"});
  EXPECT_NE(same_port.exit_code, 0);
  EXPECT_THAT(same_port.output, HasSubstr("is the port in use"));

  CommandResult list = server_->Relayctl({"clusters", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_THAT(list.output, HasSubstr("east"));
  EXPECT_TRUE(Connected("east"));
  ASSERT_EQ(server_->Relayctl({"clusters", "deregister", "east"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(east->Log(), "was deregistered"); }, kPatience));

  // Once the first is gone, a server starts on the store and removes only its own socket.
  server_->Stop();
  EXPECT_FALSE(std::filesystem::exists(server_->admin_socket()));
  std::string error;
  ASSERT_TRUE(server_->Start(&error)) << error;
  EXPECT_THAT(server_->Relayctl({"clusters", "list"}).output, HasSubstr("deregistered"));
}

// Issue 12.4: one changed byte in the registry journal stops start-up with the file, the
// offset and the repair command; the file is not compacted away; the repair keeps it
// aside and names the cluster whose record it dropped.
TEST_F(ResilienceTest, ADamagedJournalStopsStartUpUntilItIsRepaired) {
  StartServer();
  auto east = ConnectedAgent("east");
  auto west = ConnectedAgent("west");
  ASSERT_EQ(server_->Relayctl({"clusters", "deregister", "west"}).exit_code, 0);
  server_->Stop();
  east->Stop();
  west->Stop();

  std::string journal_path = dir_ + "/mgmt/relay-registry.gloo-mesh.log";
  std::string journal = ReadFileOrEmpty(journal_path);
  size_t at = journal.find("state=deregistered");
  ASSERT_NE(at, std::string::npos) << journal;
  journal[at + 6] = 'r';
  WriteFile(journal_path, journal);

  std::string error;
  EXPECT_FALSE(server_->Start(&error));
  EXPECT_THAT(error, HasSubstr(absl::StrCat("journal ", journal_path, " is damaged at byte ")));
  EXPECT_THAT(error, HasSubstr("relayctl registry repair --mgmt_secrets_dir=" + dir_ + "/mgmt"));
  EXPECT_EQ(ReadFileOrEmpty(journal_path), journal);

  CommandResult repair = server_->Relayctl({"registry", "repair"});
  ASSERT_EQ(repair.exit_code, 0) << repair.output;
  EXPECT_THAT(repair.output, HasSubstr("clusters/west"));
  EXPECT_THAT(repair.output, HasSubstr("kept the damaged journal as " + journal_path + ".damaged-"));
  ASSERT_TRUE(server_->Start(&error)) << error;
  EXPECT_THAT(server_->Relayctl({"clusters", "list"}).output, HasSubstr("east"));
  // Repairing while the server runs is refused.
  CommandResult busy = server_->Relayctl({"registry", "repair"});
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_THAT(busy.output, HasSubstr("in use by process"));
}

// Issue 12.10: an agent with a token but no certificate, started before the server,
// waits and connects once the server is there.
TEST_F(ResilienceTest, AnAgentStartedBeforeTheServerWaitsForIt) {
  int port = FreePort();
  ASSERT_GT(port, 0);
  server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", std::vector<std::string>{}, port);
  ASSERT_EQ(server_->Relayctl({"install"}).exit_code, 0);
  std::string store = dir_ + "/east";
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + store}).exit_code, 0);
  AgentUnderTest agent("east", store, absl::StrCat("127.0.0.1:", port));
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(agent.Log(), "cannot reach the management server"); }, kPatience))
      << agent.Log();
  EXPECT_TRUE(agent.process()->Running());
  std::string error;
  ASSERT_TRUE(server_->Start(&error)) << error;
  EXPECT_TRUE(agent.WaitConnected(absl::Seconds(20))) << agent.Log();
}

// Issue 12.2: a broken relay-client-tls-secret written while agent and rotator run.
TEST_F(ResilienceTest, ABrokenClientSecretIsRepaired) {
  StartServer({"--client_cert_ttl=30s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address());
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  auto store = *secrets::DirectorySecretStore::Create(agent->secrets_dir());
  secrets::SecretData good = *store->Get("gloo-mesh", kClientSecret);
  secrets::SecretData broken = good;
  broken["tls.crt"] = "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n";

  // 1. The agent is connected: it writes back the certificate it uses.
  ASSERT_THAT(store->Put("gloo-mesh", kClientSecret, broken), IsOk());
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(agent->Log(), "client_secret_repaired"); }, kPatience))
      << agent->Log();
  EXPECT_TRUE(WaitFor([&] { return store->Get("gloo-mesh", kClientSecret)->at("tls.crt") == good.at("tls.crt"); }, kPatience));
  EXPECT_TRUE(WaitFor([&] { return rotator.Health().first == 200; }, kPatience));
  EXPECT_TRUE(Connected("east"));

  // 2. The agent is down: the rotator registers again with the token; the agent comes
  // back with the new certificate.
  agent->Stop();
  ASSERT_TRUE(WaitFor([&] { return !Connected("east"); }, kPatience));
  ASSERT_THAT(store->Put("gloo-mesh", kClientSecret, broken), IsOk());
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "how=register"); }, kPatience))
      << rotator.Log();
  EXPECT_TRUE(WaitFor([&] { return rotator.Health().first == 200; }, kPatience));
  agent->Start();
  EXPECT_TRUE(agent->WaitConnected(absl::Seconds(20))) << agent->Log();

  // 3. No token: the rotator is unhealthy and says why and what to do.
  agent->Stop();
  std::filesystem::remove_all(agent->secrets_dir() + "/gloo-mesh/relay-identity-token-secret");
  ASSERT_THAT(store->Put("gloo-mesh", kClientSecret, broken), IsOk());
  EXPECT_TRUE(WaitFor([&] { return rotator.Health().first == 503; }, kPatience));
  EXPECT_THAT(rotator.Health().second, HasSubstr("unusable"));
  EXPECT_THAT(rotator.Health().second, HasSubstr("relayctl register"));

  // 4. `rotator --once --force` renews whatever the state: token back, secret broken.
  rotator.Stop();
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + agent->secrets_dir()}).exit_code, 0);
  ASSERT_THAT(store->Put("gloo-mesh", kClientSecret, broken), IsOk());
  CommandResult forced = ForceRotation("east", agent->secrets_dir(), server_->address());
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_THAT(forced.output, HasSubstr("how=register"));
  agent->Start();
  EXPECT_TRUE(agent->WaitConnected(absl::Seconds(20))) << agent->Log();
}

// Issue 12.12: a stream the server closed for want of heartbeats (the agent was stopped)
// is reported as that, not as an unreachable server; the agent then reconnects.
TEST_F(ResilienceTest, AServerSideHeartbeatCloseIsReportedAsSuch) {
  StartServer();
  auto agent = ConnectedAgent("east");
  agent->process()->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return !Connected("east"); }, kPatience));
  agent->process()->Signal(SIGCONT);
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(agent->Log(), "relay stream closed by the server: no heartbeat"); }, kPatience))
      << agent->Log();
  EXPECT_THAT(agent->Log(), Not(HasSubstr("cannot reach the management server")));
  EXPECT_TRUE(WaitFor([&] { return Connected("east"); }, kPatience));
}

// Issue 12.19: a binary that fails leaves no state directory behind.
TEST_F(ResilienceTest, AFailingAgentCreatesNoStateDirectory) {
  std::string cwd = dir_ + "/cwd";
  std::filesystem::create_directories(cwd);
  std::string agent = std::filesystem::absolute(AgentBinary());
  CommandResult failed = RunCommand({"/bin/sh", "-c", "cd \"$0\" && exec \"$1\" --cluster=east", cwd, agent});
  EXPECT_EQ(failed.exit_code, 2) << failed.output;
  EXPECT_THAT(failed.output, HasSubstr("relayctl register --cluster east"));
  EXPECT_THAT(failed.output, HasSubstr(cwd + "/.relay/agent-east"));  // it says where it looked
  EXPECT_FALSE(std::filesystem::exists(cwd + "/.relay"));
}

}  // namespace
}  // namespace relay::e2e
