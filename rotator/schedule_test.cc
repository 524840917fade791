#include "rotator/schedule.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::rotator {
namespace {

using ::testing::HasSubstr;

const absl::Time kIssued = absl::FromUnixSeconds(1767225600);

pki::JitterSource Fixed(double value) {
  return [value](const pki::CertificateInfo&) { return value; };
}

RotationState Fresh(absl::Duration lifetime = absl::Hours(100)) {
  RotationState state;
  state.have_certificate = true;
  state.certificate.not_before = kIssued;
  state.certificate.not_after = kIssued + lifetime;
  state.certificate.serial_hex = "01";
  state.token_available = true;
  return state;
}

TEST(ScheduleTest, WaitsForTheRotationPointThenRenews) {
  RotationState state = Fresh();
  RetryPolicy policy;
  Decision early = Decide(state, kIssued + absl::Hours(1), 0.5, Fixed(0), policy, 0);
  EXPECT_EQ(early.action, Action::kWait);
  EXPECT_EQ(early.at, kIssued + absl::Hours(50));
  EXPECT_EQ(Decide(state, kIssued + absl::Hours(50), 0.5, Fixed(0), policy, 0).action, Action::kRenew);
  // ratio 0.2: 80% of the lifetime goes by first.
  EXPECT_EQ(Decide(state, kIssued, 0.2, Fixed(0), policy, 0).at, kIssued + absl::Hours(80));
}

// RenewNow during a root rotation: the server's ask brings the renewal forward, never
// back, and a failure still waits its retry.
TEST(ScheduleTest, ARenewalTheServerAskedForComesBeforeTheRotationPoint) {
  RotationState state = Fresh();
  RetryPolicy policy;
  state.renew_requested_at = kIssued + absl::Hours(2);
  Decision wait = Decide(state, kIssued + absl::Hours(1), 0.5, Fixed(0), policy, 0);
  EXPECT_EQ(wait.action, Action::kWait);
  EXPECT_EQ(wait.at, kIssued + absl::Hours(2));
  EXPECT_THAT(wait.why, HasSubstr("the server asked for"));
  Decision renew = Decide(state, kIssued + absl::Hours(2), 0.5, Fixed(0), policy, 0);
  EXPECT_EQ(renew.action, Action::kRenew);
  EXPECT_THAT(renew.why, HasSubstr("the server asked for a renewal"));
  state.renew_requested_at = kIssued + absl::Hours(70);  // later than the rotation point
  EXPECT_EQ(Decide(state, kIssued + absl::Hours(1), 0.5, Fixed(0), policy, 0).at, kIssued + absl::Hours(50));
  state.renew_requested_at = kIssued + absl::Hours(2);
  state.consecutive_failures = 1;
  state.last_failure = kIssued + absl::Hours(2);
  EXPECT_EQ(Decide(state, kIssued + absl::Hours(2), 0.5, Fixed(0), policy, 0).action, Action::kWait);
}

TEST(ScheduleTest, JitterMovesRenewalEarlierWithinATenthOfTheGrace) {
  RotationState state = Fresh();
  RetryPolicy policy;
  for (double draw : {0.0, 0.25, 0.5, 0.999}) {
    Decision decision = Decide(state, kIssued, 0.5, Fixed(draw), policy, 0);
    EXPECT_LE(decision.at, kIssued + absl::Hours(50));
    EXPECT_GE(decision.at, kIssued + absl::Hours(45));
    EXPECT_EQ(decision.at, kIssued + absl::Hours(50) - absl::Hours(5) * draw);
  }
}

TEST(ScheduleTest, ForceRenewsNow) {
  RotationState state = Fresh();
  state.force = true;
  EXPECT_EQ(Decide(state, kIssued, 0.5, Fixed(0), RetryPolicy(), 0).action, Action::kRenew);
}

TEST(ScheduleTest, FailuresBackOffExponentiallyWithACapAndJitter) {
  RetryPolicy policy{absl::Seconds(1), absl::Seconds(60)};
  EXPECT_EQ(RetryDelay(1, policy, 0), absl::Milliseconds(500));
  EXPECT_EQ(RetryDelay(1, policy, 0.999999), absl::Microseconds(999999) + absl::Nanoseconds(500));
  EXPECT_EQ(RetryDelay(3, policy, 0), absl::Seconds(2));
  EXPECT_EQ(RetryDelay(3, policy, 1), absl::Seconds(4));
  EXPECT_EQ(RetryDelay(20, policy, 1), absl::Seconds(60));
  EXPECT_EQ(RetryDelay(20, policy, 0), absl::Seconds(30));

  RotationState state = Fresh();
  absl::Time now = kIssued + absl::Hours(60);  // past the rotation point
  state.consecutive_failures = 3;
  state.last_failure = now;
  Decision wait = Decide(state, now, 0.5, Fixed(0), policy, 0.5);
  EXPECT_EQ(wait.action, Action::kWait);
  EXPECT_EQ(wait.at, now + absl::Seconds(3));
  EXPECT_EQ(Decide(state, now + absl::Seconds(3), 0.5, Fixed(0), policy, 0.5).action, Action::kRenew);
}

TEST(ScheduleTest, RetriesNeverWaitPastExpiry) {
  RetryPolicy policy{absl::Seconds(1), absl::Hours(10)};
  RotationState state = Fresh();
  absl::Time now = state.certificate.not_after - absl::Minutes(1);
  state.consecutive_failures = 30;
  state.last_failure = now;
  Decision decision = Decide(state, now, 0.5, Fixed(0), policy, 0);
  EXPECT_EQ(decision.at, state.certificate.not_after);
}

// A deregistered cluster is refused until an operator admits it: ask again only at the
// longest retry interval (not hammering), and so be back within it after the admit.
TEST(ScheduleTest, RefusalWaitsTheLongestRetryIntervalAndNoLonger) {
  RetryPolicy policy{absl::Seconds(1), absl::Seconds(60)};
  RotationState state = Fresh();
  absl::Time now = kIssued + absl::Hours(60);
  state.consecutive_failures = 1;
  state.last_failure = now;
  state.last_failure_refused = true;
  EXPECT_EQ(Decide(state, now, 0.5, Fixed(0), policy, 0).at, now + absl::Seconds(60));
  // Expired and refused (Register of a deregistered cluster): the same.
  absl::Time expired = state.certificate.not_after + absl::Seconds(1);
  state.last_failure = expired;
  Decision register_again = Decide(state, expired, 0.5, Fixed(0), policy, 0);
  EXPECT_EQ(register_again.action, Action::kWait);
  EXPECT_EQ(register_again.at, expired + absl::Seconds(60));
  EXPECT_EQ(Decide(state, expired + absl::Seconds(60), 0.5, Fixed(0), policy, 0).action, Action::kRegister);
}

// A client secret that exists but cannot be used is not "no certificate yet": with the
// token the rotator registers again at once; without, it is stuck and unhealthy.
TEST(ScheduleTest, AnUnusableSecretIsRepairedThroughRegisterOrReportedUnhealthy) {
  RotationState broken;
  broken.certificate_problem = "secret gloo-mesh/relay-client-tls-secret key tls.crt: no PEM certificate";
  broken.token_available = true;
  Decision repair = Decide(broken, kIssued, 0.5, Fixed(0), RetryPolicy(), 0);
  EXPECT_EQ(repair.action, Action::kRegister);
  EXPECT_THAT(repair.why, HasSubstr("unusable"));
  EXPECT_THAT(HealthProblem(broken, kIssued, 0.5, Fixed(0)), HasSubstr("no PEM certificate"));
  broken.token_available = false;
  Decision stuck = Decide(broken, kIssued, 0.5, Fixed(0), RetryPolicy(), 0);
  EXPECT_EQ(stuck.action, Action::kStuck);
  EXPECT_THAT(stuck.why, HasSubstr("relayctl register"));
  EXPECT_THAT(HealthProblem(broken, kIssued, 0.5, Fixed(0)), HasSubstr("relayctl register"));
}

// An unreachable store (an apiserver outage) is neither a missing nor a broken secret:
// no Register, no stuck state, no unhealthy probe; a failure counted and a retry on the
// failure schedule.
TEST(ScheduleTest, AnUnreadableStoreIsRetriedNeverRepaired) {
  RotationState outage;
  outage.store_problem = "the Kubernetes API at https://10.0.0.1:443 did not answer";
  outage.token_available = false;
  Decision now = Decide(outage, kIssued, 0.5, Fixed(0), RetryPolicy(), 0);
  EXPECT_EQ(now.action, Action::kStoreUnavailable);
  EXPECT_THAT(now.why, HasSubstr("did not answer"));
  EXPECT_EQ(HealthProblem(outage, kIssued, 0.5, Fixed(0)), "");
  outage.consecutive_failures = 3;
  outage.last_failure = kIssued;
  Decision later = Decide(outage, kIssued + absl::Seconds(1), 0.5, Fixed(0), RetryPolicy(), 0.5);
  EXPECT_EQ(later.action, Action::kWait);
  EXPECT_EQ(later.at, kIssued + RetryDelay(3, RetryPolicy(), 0.5));
}

TEST(ScheduleTest, ForceWithoutACertificateRegisters) {
  RotationState missing;
  missing.token_available = true;
  missing.force = true;
  EXPECT_EQ(Decide(missing, kIssued, 0.5, Fixed(0), RetryPolicy(), 0).action, Action::kRegister);
  missing.token_available = false;
  EXPECT_EQ(Decide(missing, kIssued, 0.5, Fixed(0), RetryPolicy(), 0).action, Action::kStuck);
}

TEST(ScheduleTest, ExpiredFallsBackToRegisterWithATokenOrIsStuckWithout) {
  RotationState state = Fresh();
  absl::Time after = state.certificate.not_after + absl::Seconds(1);
  Decision with_token = Decide(state, after, 0.5, Fixed(0), RetryPolicy(), 0);
  EXPECT_EQ(with_token.action, Action::kRegister);
  state.token_available = false;
  Decision without = Decide(state, after, 0.5, Fixed(0), RetryPolicy(), 0);
  EXPECT_EQ(without.action, Action::kStuck);
  EXPECT_THAT(without.why, HasSubstr("relayctl register"));
  // No certificate at all: first contact is the agent's, the rotator waits.
  RotationState missing;
  missing.token_available = true;
  EXPECT_EQ(Decide(missing, after, 0.5, Fixed(0), RetryPolicy(), 0).action, Action::kWait);
  EXPECT_EQ(HealthProblem(missing, after, 0.5, Fixed(0)), "");
}

TEST(ScheduleTest, HealthFailsPastTheRotationPointAfterAFailureOrWhenExpired) {
  RotationState state = Fresh();
  EXPECT_EQ(HealthProblem(state, kIssued + absl::Hours(60), 0.5, Fixed(0)), "");
  state.consecutive_failures = 1;
  EXPECT_EQ(HealthProblem(state, kIssued + absl::Hours(10), 0.5, Fixed(0)), "");
  EXPECT_THAT(HealthProblem(state, kIssued + absl::Hours(60), 0.5, Fixed(0)), HasSubstr("past its rotation point"));
  state.consecutive_failures = 0;
  state.token_available = false;
  EXPECT_THAT(HealthProblem(state, kIssued + absl::Hours(101), 0.5, Fixed(0)), HasSubstr("relayctl register"));
}

}  // namespace
}  // namespace relay::rotator
