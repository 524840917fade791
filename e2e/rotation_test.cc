// Issue 4: the rotator keeps the channel valid. Short certificate lifetimes (8-12 s)
// make rotations happen within seconds.
#include <signal.h>

#include <filesystem>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_matchers.h"
#include "e2e/harness.h"
#include "e2e/relay_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "secrets/directory_store.h"

namespace relay::e2e {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kClientSecret[] = "relay-client-tls-secret";

// The client secret as the agent would read it: one consistent version.
struct ClientSecret {
  bool ok = false;
  std::string error;
  pki::CertificateInfo leaf;
  std::string chain_pem;
};

ClientSecret ReadClientSecret(const std::string& secrets_dir) {
  ClientSecret result;
  auto store = secrets::DirectorySecretStore::Create(secrets_dir);
  absl::StatusOr<secrets::SecretData> data = (*store)->Get("gloo-mesh", kClientSecret);
  if (!data.ok()) {
    result.error = std::string(data.status().message());
    return result;
  }
  if (!data->count("tls.crt") || !data->count("tls.key") || !data->count("ca.crt")) {
    result.error = "incomplete secret";
    return result;
  }
  auto chain = pki::ParseCertificateChainPem(data->at("tls.crt"));
  auto key = pki::ParsePrivateKeyPem(data->at("tls.key"));
  if (!chain.ok() || !key.ok()) {
    result.error = "unreadable certificate or key";
    return result;
  }
  absl::Status match = pki::CheckKeyMatchesCertificate((*chain)[0].get(), key->get());
  if (!match.ok()) {
    result.error = std::string(match.message());
    return result;
  }
  result.leaf = *pki::InspectCertificate((*chain)[0].get());
  result.chain_pem = data->at("tls.crt");
  result.ok = true;
  return result;
}

class RotationTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags) {
    dir_ = MakeTempDir("rotation");
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", flags);
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    root_ = SecretFile(server_->secrets_dir(), "relay-root-tls-secret", "ca.crt");
  }

  std::unique_ptr<AgentUnderTest> ConnectedAgent(const std::string& cluster,
                                                 std::vector<std::string> flags = {}) {
    return StartConnectedAgent(*server_, dir_, cluster, std::move(flags));
  }

  bool VerifiesAt(const std::string& chain_pem, absl::Time at) {
    auto chain = pki::ParseCertificateChainPem(chain_pem);
    auto roots = pki::ParseCertificateChainPem(root_);
    return chain.ok() && roots.ok() &&
           pki::VerifyChain((*chain)[0].get(), pki::Borrow(*chain), pki::Borrow(*roots), at,
                            pki::Purpose::kClientAuth)
               .ok();
  }

  std::string dir_;
  std::string root_;
  std::unique_ptr<ServerUnderTest> server_;
};

// 1. Ratio 0.5: no renewal comes before its jitter window, the serial changes, the old
// chain still verifies when the new one arrives (the channel is never without a valid
// certificate), three rotations in a row, and no heartbeat goes unanswered. (That each
// renewal comes exactly at its point is rotator_test's, on an injected clock.)
TEST_F(RotationTest, ThreeRotationsInTheJitterWindowWithoutMissingAHeartbeat) {
  StartServer({"--client_cert_ttl=12s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address(), {"--grace_period_ratio=0.5"});
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;

  struct Seen {
    ClientSecret secret;
    absl::Time first_seen;
  };
  std::vector<Seen> seen;
  // Three rotations take about 18 s; only a broken rotator takes this long.
  absl::Time deadline = absl::Now() + absl::Seconds(90);
  while (seen.size() < 4 && absl::Now() < deadline) {
    ClientSecret secret = ReadClientSecret(agent->secrets_dir());
    ASSERT_TRUE(secret.ok) << secret.error;
    if (seen.empty() || seen.back().secret.leaf.serial_hex != secret.leaf.serial_hex) {
      seen.push_back({secret, absl::Now()});
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(seen.size(), 4u) << rotator.Log();
  for (size_t i = 1; i < seen.size(); ++i) {
    const pki::CertificateInfo& old_leaf = seen[i - 1].secret.leaf;
    absl::Time window_start = old_leaf.not_after - old_leaf.Lifetime() * 0.5 * 1.1;
    // Seen after it was written, and written after the rotator's clock reached the window.
    EXPECT_GE(seen[i].first_seen, window_start) << "rotation " << i;
    EXPECT_GT(seen[i].secret.leaf.not_after, old_leaf.not_after);
    EXPECT_TRUE(VerifiesAt(seen[i - 1].secret.chain_pem, seen[i].first_seen)) << "old chain, rotation " << i;
    EXPECT_TRUE(VerifiesAt(seen[i].secret.chain_pem, seen[i].first_seen)) << "new chain, rotation " << i;
  }
  std::string metrics = agent->Metrics();
  EXPECT_EQ(MetricValue(metrics, "relay_agent_heartbeats_unanswered_total"), 0) << metrics;
  EXPECT_GT(MetricValue(metrics, "relay_agent_heartbeat_acks_total"), 20);
  EXPECT_EQ(MetricValue(metrics, "relay_agent_connected"), 1);
  // The agent's watch picked up each new secret.
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_agent_credential_reloads_total") >= 3; },
                      kPatience));
  EXPECT_GE(MetricValue(rotator.Metrics(), "relay_rotator_renewals_total{how=\"renew\"}"), 3);
  EXPECT_THAT(server_->Log(), Not(HasSubstr("client certificate expired")));
  EXPECT_EQ(rotator.Health().first, 200);
}

// 2. SIGKILL at random moments during renewals: the secret is always whole and its key
// always matches; the agent never loads a mismatched pair.
TEST_F(RotationTest, RotatorKilledDuringRenewalsNeverLeavesABrokenSecret) {
  StartServer({});
  auto agent = ConnectedAgent("east");
  std::vector<std::string> once = {RotatorBinary(), "--cluster=east", "--secrets_dir=" + agent->secrets_dir(),
                                   "--server_address=" + server_->address(), "--once", "--force"};
  // How long one forced renewal takes here, to aim the kills inside it.
  absl::Time start = absl::Now();
  CommandResult timed = RunCommand(once);
  ASSERT_EQ(timed.exit_code, 0) << timed.output;
  absl::Duration one = absl::Now() - start;

  std::mt19937 rng(20261127);
  std::set<std::string> serials = {ReadClientSecret(agent->secrets_dir()).leaf.serial_hex};
  // Kill until enough kills have landed during a renewal (the process still running) and
  // enough renewals completed, with a bound on attempts: how many of a fixed number of
  // kills land where depends on timing.
  int killed_mid_way = 0;
  constexpr int kKillsMidWay = 20;
  constexpr int kMaxKills = 200;
  int round = 0;
  for (; (killed_mid_way < kKillsMidWay || serials.size() <= 5) && round < kMaxKills; ++round) {
    std::string log = dir_ + "/kill.log";
    Process rotator(once, log);
    absl::SleepFor(one * std::uniform_real_distribution<double>(0.05, 1.2)(rng));
    if (rotator.Running()) killed_mid_way++;
    rotator.Signal(SIGKILL);
    rotator.Wait(absl::Seconds(5));
    ClientSecret secret = ReadClientSecret(agent->secrets_dir());
    ASSERT_TRUE(secret.ok) << "round " << round << ": " << secret.error;
    serials.insert(secret.leaf.serial_hex);
  }
  EXPECT_GE(killed_mid_way, kKillsMidWay) << "kills should land during renewals (one takes " << one << ", "
                                          << round << " rounds)";
  EXPECT_GT(serials.size(), 5u);
  // The agent followed along and never read a key from one version with a certificate
  // from another.
  EXPECT_THAT(agent->Log(), Not(HasSubstr("client_secret_reload_skipped")));
  EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_connected"), 1);
  // The secret it ended with still works: a new connection with it succeeds.
  agent->Stop();
  agent->Start();
  EXPECT_TRUE(agent->WaitConnected(absl::Seconds(20))) << agent->Log();
}

// 3. The server is down across the renewal time: the rotator retries and succeeds once
// it is back, before expiry (through Renew, which only an unexpired certificate can
// call: no Register fallback); the agent comes back too.
TEST_F(RotationTest, ServerDownAcrossTheRenewalTimeRetriesUntilItIsBack) {
  // 16 s: 8 s to the rotation point, 2 s down past it, retries at most 2 s apart, and
  // several seconds to spare before expiry.
  StartServer({"--client_cert_ttl=16s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address(), {"--retry_max=2s"});
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  ASSERT_TRUE(first.ok);
  server_->Stop();
  absl::Time renew_by = first.leaf.not_after - first.leaf.Lifetime() * 0.5;
  // Stay down until past the rotation point, then come back.
  absl::SleepFor(std::max(absl::ZeroDuration(), renew_by + absl::Seconds(2) - absl::Now()));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "renewal_failed"); }, kPatience));
  ASSERT_TRUE(server_->Start(&error)) << error;
  ASSERT_TRUE(WaitFor([&] { return ReadClientSecret(agent->secrets_dir()).leaf.serial_hex != first.leaf.serial_hex; },
                      kPatience))
      << rotator.Log();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "how=renew"); }, kPatience)) << rotator.Log();
  EXPECT_THAT(rotator.Log(), Not(HasSubstr("how=register")));
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_agent_connected") == 1; }, kPatience))
      << agent->Log();
}

// 4. Down past expiry, with the token present: recovery through Register.
TEST_F(RotationTest, DowntimePastExpiryRecoversThroughRegister) {
  StartServer({"--client_cert_ttl=6s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address());
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  server_->Stop();
  absl::SleepFor(first.leaf.not_after + absl::Seconds(1) - absl::Now());
  ASSERT_TRUE(WaitFor([&] { return rotator.Health().first == 503; }, kPatience));
  EXPECT_THAT(rotator.Health().second, HasSubstr("expired"));
  ASSERT_TRUE(server_->Start(&error)) << error;
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "how=register"); }, kPatience))
      << rotator.Log();
  ClientSecret recovered = ReadClientSecret(agent->secrets_dir());
  ASSERT_TRUE(recovered.ok) << recovered.error;
  EXPECT_GT(recovered.leaf.not_after, absl::Now());
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_agent_connected") == 1; }, kPatience))
      << agent->Log();
  EXPECT_TRUE(WaitFor([&] { return rotator.Health().first == 200; }, kPatience));
}

// 5. No token and an expired certificate: unhealthy, saying how to recover.
TEST_F(RotationTest, ExpiredWithoutATokenIsUnhealthyWithTheRecoveryCommand) {
  StartServer({"--client_cert_ttl=4s"});
  auto agent = ConnectedAgent("east");
  agent->Stop();
  std::filesystem::remove_all(agent->secrets_dir() + "/gloo-mesh/relay-identity-token-secret");
  server_->Stop();
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address());
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  absl::SleepFor(first.leaf.not_after + absl::Milliseconds(500) - absl::Now());
  ASSERT_TRUE(WaitFor([&] { return rotator.Health().first == 503; }, kPatience));
  EXPECT_THAT(rotator.Health().second, HasSubstr("relayctl register"));
  EXPECT_THAT(rotator.Log(), HasSubstr("rotation_stuck"));
  CommandResult once = RunCommand({RotatorBinary(), "--cluster=east", "--secrets_dir=" + agent->secrets_dir(),
                                   "--server_address=" + server_->address(), "--once"});
  EXPECT_NE(once.exit_code, 0);
  EXPECT_THAT(once.output, HasSubstr("relayctl register"));
}

// 6. A deregistered cluster: Renew is refused and the rotator asks again only every
// --retry_max (not hammering); past expiry its Register is refused too; once an operator
// admits the cluster it registers within that interval and the agent is back.
TEST_F(RotationTest, DeregisteredClusterIsRefusedNotHammeredAndBackAfterAnAdmit) {
  StartServer({"--client_cert_ttl=6s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address(), {"--retry_max=3s"});
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  ASSERT_EQ(server_->Relayctl({"clusters", "deregister", "east"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "reason=refused"); }, kPatience))
      << rotator.Log();
  absl::SleepFor(absl::Seconds(4));
  int refusals = CountOccurrences(server_->Log(), "event=renew_refused");
  EXPECT_LE(refusals, 2) << server_->Log();
  EXPECT_LE(MetricValue(rotator.Metrics(), "relay_rotator_renewal_errors_total{reason=\"refused\"}"), 2);

  absl::SleepFor(std::max(absl::ZeroDuration(), first.leaf.not_after + absl::Seconds(1) - absl::Now()));
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(server_->Log(), "event=register_refused cluster=east reason=deregistered"); }, kPatience))
      << server_->Log();
  ASSERT_EQ(server_->Relayctl({"register", "--cluster=east", "--secrets_dir=" + agent->secrets_dir()}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(rotator.Log(), "how=register"); }, kPatience))
      << rotator.Log();
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_agent_connected") == 1; }, kPatience))
      << agent->Log();
}

// 7. A CSR for another cluster, sent with a valid certificate: PERMISSION_DENIED.
TEST_F(RotationTest, RenewForAnotherClusterIsPermissionDenied) {
  StartServer({});
  auto agent = ConnectedAgent("east");
  ClientSecret east = ReadClientSecret(agent->secrets_dir());
  auto channel = MutualTlsChannel(server_->address(), root_, agent->SecretKey(kClientSecret, "tls.key"),
                                  east.chain_pem);
  auto stub = relay::v1::Registration::NewStub(channel);
  pki::UniquePtr<EVP_PKEY> key = *pki::GenerateKey();
  grpc::ClientContext context;
  SetDeadline(&context);
  relay::v1::RenewRequest request;
  request.set_csr_pem(*pki::CreateCsrPem(key.get(), "west"));
  relay::v1::CertificateResponse response;
  grpc::Status status = stub->Renew(&context, request, &response);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(status.error_message(), HasSubstr("\"west\""));
  EXPECT_TRUE(response.certificate_chain_pem().empty());
  // The same call for its own name works.
  grpc::ClientContext own_context;
  SetDeadline(&own_context);
  request.set_csr_pem(*pki::CreateCsrPem(key.get(), "east"));
  EXPECT_THAT(stub->Renew(&own_context, request, &response), IsOk());
}

// 8. The server renews its own certificate while agents stay connected; new
// connections get the new one.
TEST_F(RotationTest, ServerCertificateRenewedWhileAgentsStayConnected) {
  StartServer({"--server_cert_lifetime=6s"});
  auto agent = ConnectedAgent("east");
  std::string before = SecretFile(server_->secrets_dir(), "relay-server-tls-secret", "tls.crt");
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string log = server_->Log();
        size_t first = log.find("server_certificate_renewed");
        return first != std::string::npos && log.find("server_certificate_renewed", first + 1) != std::string::npos;
      }, kPatience))
      << server_->Log();
  EXPECT_NE(SecretFile(server_->secrets_dir(), "relay-server-tls-secret", "tls.crt"), before);
  std::string metrics = agent->Metrics();
  EXPECT_EQ(MetricValue(metrics, "relay_agent_reconnects_total"), 0) << agent->Log();
  EXPECT_EQ(MetricValue(metrics, "relay_agent_connected"), 1);
  // The first server certificate has expired by now: a new agent can only connect if
  // the server serves the renewed one.
  auto late = ConnectedAgent("west");
  EXPECT_EQ(MetricValue(late->Metrics(), "relay_agent_connected"), 1);
}

// Issue 12.6: the server's clientCertTtl is lowered. A renewal then expires before the
// certificate it replaces; it is newer all the same (issued later, for a fresh key), so
// renewals go on and the agent stays connected.
TEST_F(RotationTest, LoweringTheClientCertTtlDoesNotStallRenewals) {
  StartServer({"--client_cert_ttl=120s"});
  auto agent = ConnectedAgent("east");
  RotatorUnderTest rotator("east", agent->secrets_dir(), server_->address());
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  ASSERT_TRUE(first.ok);

  int port = server_->grpc_port();
  server_->Stop();
  server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", std::vector<std::string>{"--client_cert_ttl=8s"}, port);
  ASSERT_TRUE(server_->Start(&error)) << error;
  CommandResult forced = ForceRotation("east", agent->secrets_dir(), server_->address());
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  ClientSecret lowered = ReadClientSecret(agent->secrets_dir());
  ASSERT_TRUE(lowered.ok);
  EXPECT_LT(lowered.leaf.not_after, first.leaf.not_after);
  // The sidecar goes on renewing the 8-second certificates at its ratio.
  std::set<std::string> serials = {lowered.leaf.serial_hex};
  EXPECT_TRUE(WaitFor(
      [&] {
        serials.insert(ReadClientSecret(agent->secrets_dir()).leaf.serial_hex);
        return serials.size() >= 3;
      }, kPatience))
      << rotator.Log();
  EXPECT_THAT(rotator.Log() + forced.output, Not(HasSubstr("not newer")));
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_agent_connected") == 1; }, kPatience))
      << agent->Log();
  EXPECT_EQ(rotator.Health().first, 200) << rotator.Health().second;
}

// --rotation=builtin: the agent renews by itself.
TEST_F(RotationTest, BuiltinRotationRenewsWithoutASidecar) {
  StartServer({"--client_cert_ttl=6s"});
  auto agent = ConnectedAgent("east", {"--rotation=builtin"});
  ClientSecret first = ReadClientSecret(agent->secrets_dir());
  ASSERT_TRUE(WaitFor([&] { return ReadClientSecret(agent->secrets_dir()).leaf.serial_hex != first.leaf.serial_hex; }, kPatience))
      << agent->Log();
  EXPECT_TRUE(WaitFor([&] { return MetricValue(agent->Metrics(), "relay_rotator_renewals_total{how=\"renew\"}") >= 1; }, kPatience));
  EXPECT_EQ(MetricValue(agent->Metrics(), "relay_agent_connected"), 1);
}

}  // namespace
}  // namespace relay::e2e
