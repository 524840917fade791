#include "rotator/rotator.h"

#include <cstdlib>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/fake_clock.h"
#include "common/process_testing.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "config/values.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/pem.h"
#include "pki/testing.h"
#include "mgmt/service_testing.h"
#include "secrets/directory_store.h"

namespace relay::rotator {
namespace {

using ::relay::testing::IsOk;
using ::testing::HasSubstr;
using pki::testing::TestPki;
using pki::testing::ValueOrDie;

constexpr char kNs[] = "gloo-mesh";

// The value of an unlabelled gauge in Prometheus text, or -1 when it has no sample.
double Gauge(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return -1;
}

class RotatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *secrets::DirectorySecretStore::Create(relay::testing::MakeTestDir("rot"));
    ASSERT_THAT(store_->Put(kNs, "relay-root-tls-secret", {{"ca.crt", ValueOrDie(pki::CertificateToPem(pki_.root.get()))}}), IsOk());
    options_.cluster = "east";
  }

  // A client secret issued by the test CA for `cluster`, expiring at `not_after`.
  secrets::SecretData ClientSecret(const std::string& cluster, absl::Time* not_after) {
    pki::UniquePtr<EVP_PKEY> key = ValueOrDie(pki::GenerateKey());
    pki::UniquePtr<X509> leaf =
        ValueOrDie(pki_.intermediate->Issue(key.get(), pki::ClientSpec(cluster, now_, absl::Hours(1))));
    *not_after = ValueOrDie(pki::InspectCertificate(leaf.get())).not_after;
    return {{"tls.crt", ValueOrDie(pki::CertificateToPem(leaf.get())) + pki_.intermediate->certificate_pem()},
            {"tls.key", ValueOrDie(pki::PrivateKeyToPem(key.get()))},
            {"ca.crt", ValueOrDie(pki::CertificateToPem(pki_.root.get()))}};
  }

  absl::Time now_ = absl::Now();
  TestPki pki_ = TestPki::Make(now_ - absl::Hours(1));
  std::unique_ptr<secrets::DirectorySecretStore> store_;
  RotatorOptions options_;
  Metrics metrics_;
};

// Issue 12.2 and 12.14: a client secret the agent cannot use (here: another cluster's
// certificate) makes the rotator unhealthy with the reason, and its expiry gauge never
// shows that certificate; a usable one clears both.
TEST_F(RotatorTest, AnUnusableSecretIsUnhealthyAndNotShownAsTheCertificateInUse) {
  absl::Time west_expiry;
  ASSERT_THAT(store_->Put(kNs, "relay-client-tls-secret", ClientSecret("west", &west_expiry)), IsOk());
  Rotator rotator(options_, store_.get(), &metrics_);
  std::string problem = rotator.HealthProblem();
  EXPECT_THAT(problem, HasSubstr("unusable"));
  EXPECT_THAT(problem, HasSubstr("\"west\""));
  EXPECT_THAT(problem, HasSubstr("relayctl register"));  // no token here
  EXPECT_EQ(Gauge(metrics_.Render(), "relay_client_certificate_expiry_timestamp_seconds"), -1);

  absl::Time east_expiry;
  ASSERT_THAT(store_->Put(kNs, "relay-client-tls-secret", ClientSecret("east", &east_expiry)), IsOk());
  EXPECT_EQ(rotator.HealthProblem(), "");
  EXPECT_EQ(Gauge(metrics_.Render(), "relay_client_certificate_expiry_timestamp_seconds"),
            absl::ToUnixSeconds(east_expiry));
}

// No client secret at all is the agent's first contact: healthy, nothing to do.
TEST_F(RotatorTest, NoSecretYetIsHealthyAndWaitsForTheAgent) {
  Rotator rotator(options_, store_.get(), &metrics_);
  EXPECT_EQ(rotator.HealthProblem(), "");
  EXPECT_THAT(rotator.RunOnce(), IsOk());
}

// Real time the loop tests wait for an event at most: only a broken rotator takes this
// long; a working one answers in milliseconds.
constexpr absl::Duration kPatience = absl::Seconds(30);

// The rotator's loop against the management server's services in this process (real
// gRPC and TLS), with time moved through a FakeClock: what it does at a moment is
// tested by moving to that moment, never by sleeping until it.
class RotatorLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mgmt::ServerOptions server_options;
    server_options.values.client_cert_ttl = absl::Hours(24);
    services_ = mgmt::testing::ServicesUnderTest::Start(server_options);
    ASSERT_NE(services_, nullptr);
    store_ = *secrets::DirectorySecretStore::Create(relay::testing::MakeTestDir("loop"), absl::Milliseconds(20));
    ASSERT_THAT(store_->Put(kNs, "relay-root-tls-secret", {{"ca.crt", services_->root_pem()}}), IsOk());
    options_.cluster = "east";
    options_.server = {services_->address(), config::kDefaultAuthority};
    options_.clock = &clock_;
  }

  // Registers `cluster` with the server and writes its certificate as the client secret.
  pki::CertificateInfo WriteRegisteredSecret(const std::string& cluster) {
    mgmt::testing::ServicesUnderTest::Registered registered = services_->Register(cluster);
    EXPECT_THAT(registered.status, IsOk());
    EXPECT_THAT(store_->Put(kNs, "relay-client-tls-secret", {{"tls.crt", registered.credentials.chain_pem},
                                                             {"tls.key", registered.credentials.key_pem},
                                                             {"ca.crt", services_->root_pem()}})
                    , IsOk());
    auto chain = pki::ParseCertificateChainPem(registered.credentials.chain_pem);
    EXPECT_THAT(chain, IsOk());
    return chain.ok() ? ValueOrDie(pki::InspectCertificate(chain->front().get())) : pki::CertificateInfo();
  }

  // The serial of a usable client secret for east, or "".
  std::string ClientSerial() {
    enrolment::ClientSecretState state = enrolment::InspectClientSecret(*store_, options_.secrets, "east");
    return state.kind == enrolment::ClientSecretState::kUsable ? state.leaf.serial_hex : "";
  }

  // Waits (real time, up to kPatience) until `condition` holds: for what the rotator's
  // thread does after the clock moved.
  static bool Eventually(const std::function<bool()>& condition) {
    return relay::testing::WaitFor(condition, kPatience);
  }

  // Waits until east's usable client certificate is not `serial`.
  bool AwaitNewSerial(const std::string& serial) {
    return Eventually([&] {
      std::string now = ClientSerial();
      return !now.empty() && now != serial;
    });
  }

  double Counter(const std::string& sample) {
    for (absl::string_view line : absl::StrSplit(metrics_.Render(), '\n')) {
      double value = 0;
      if (absl::StartsWith(line, sample + " ") && absl::SimpleAtod(line.substr(sample.size() + 1), &value)) return value;
    }
    return 0;
  }

  FakeClock clock_{absl::Now()};
  std::unique_ptr<mgmt::testing::ServicesUnderTest> services_;
  std::unique_ptr<secrets::DirectorySecretStore> store_;
  RotatorOptions options_;
  Metrics metrics_;
};

// It sleeps until the rotation point (DESIGN.md "Rotation time"), does nothing a second
// before it, and renews over mTLS when the clock reaches it.
TEST_F(RotatorLoopTest, RenewsWhenTheClockReachesTheRotationPoint) {
  pki::CertificateInfo first = WriteRegisteredSecret("east");
  absl::StatusOr<absl::Time> due = pki::RenewAt(first, options_.grace_period_ratio);
  ASSERT_THAT(due, IsOk());
  Rotator rotator(options_, store_.get(), &metrics_);
  rotator.Start();
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), *due);

  clock_.AdvanceTo(*due - absl::Seconds(1));
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), *due);  // still asleep, same deadline
  EXPECT_EQ(ClientSerial(), first.serial_hex);
  EXPECT_EQ(Counter("relay_rotator_renewals_total{how=\"renew\"}"), 0);

  clock_.AdvanceTo(*due);
  EXPECT_TRUE(AwaitNewSerial(first.serial_hex)) << "no renewal at the rotation point";
  EXPECT_TRUE(Eventually([&] { return Counter("relay_rotator_renewals_total{how=\"renew\"}") >= 1; }));
  rotator.Stop();
}

// A failed renewal is retried after the backoff of the injected clock: 0.5-1 s after
// the first failure, 1-2 s after the second (equal jitter, doubling).
TEST_F(RotatorLoopTest, RetriesAfterBackoffOnTheInjectedClock) {
  pki::CertificateInfo first = WriteRegisteredSecret("east");
  options_.server.address = "127.0.0.1:1";  // nobody listens: every renewal fails
  Rotator rotator(options_, store_.get(), &metrics_);
  rotator.Start();
  std::optional<absl::Time> due = clock_.AwaitSleeper(kPatience);
  ASSERT_TRUE(due.has_value());

  clock_.AdvanceTo(*due);
  std::optional<absl::Time> retry = clock_.AwaitSleeper(kPatience);
  ASSERT_TRUE(retry.has_value());
  EXPECT_GE(*retry - *due, absl::Milliseconds(500));
  EXPECT_LE(*retry - *due, absl::Seconds(1));
  EXPECT_EQ(Counter("relay_rotator_renewal_errors_total{reason=\"unavailable\"}"), 1);

  clock_.AdvanceTo(*retry);
  std::optional<absl::Time> second_retry = clock_.AwaitSleeper(kPatience);
  ASSERT_TRUE(second_retry.has_value());
  EXPECT_GE(*second_retry - *retry, absl::Seconds(1));
  EXPECT_LE(*second_retry - *retry, absl::Seconds(2));
  EXPECT_EQ(Counter("relay_rotator_renewal_errors_total{reason=\"unavailable\"}"), 2);
  EXPECT_EQ(ClientSerial(), first.serial_hex);
  rotator.Stop();
}

// Without a client secret it waits for the agent's registration with no deadline at
// all; the secret's arrival wakes it and it plans the rotation point.
TEST_F(RotatorLoopTest, ANewClientSecretWakesTheLoop) {
  Rotator rotator(options_, store_.get(), &metrics_);
  rotator.Start();
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), absl::InfiniteFuture());

  pki::CertificateInfo first = WriteRegisteredSecret("east");
  absl::Time due = *pki::RenewAt(first, options_.grace_period_ratio);
  EXPECT_EQ(clock_.AwaitSleeper(kPatience, [&](absl::Time deadline) { return deadline == due; }), due);
  rotator.Stop();
}

// Stuck on a secret it cannot use and no token: the token's arrival (relayctl register)
// wakes it, and it registers at once, without waiting for its next look.
TEST_F(RotatorLoopTest, ATokenArrivingEndsAStuckRotation) {
  WriteRegisteredSecret("west");  // not east's: unusable here
  Rotator rotator(options_, store_.get(), &metrics_);
  rotator.Start();
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  EXPECT_THAT(rotator.HealthProblem(), HasSubstr("relayctl register"));

  ASSERT_THAT(store_->Put(options_.secrets.TokenNamespace(), options_.secrets.values.token_secret.name,
                          {{options_.secrets.values.token_secret.key, services_->token()}})
                  , IsOk());
  EXPECT_TRUE(AwaitNewSerial("")) << "the token did not end the stuck rotation";
  EXPECT_TRUE(Eventually([&] { return Counter("relay_rotator_renewals_total{how=\"register\"}") == 1; }));
  EXPECT_TRUE(Eventually([&] { return rotator.HealthProblem().empty(); })) << rotator.HealthProblem();
  rotator.Stop();
}

}  // namespace
}  // namespace relay::rotator
