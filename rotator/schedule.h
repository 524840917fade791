#ifndef RELAY_ROTATOR_SCHEDULE_H_
#define RELAY_ROTATOR_SCHEDULE_H_

// When to renew, retry, fall back to Register, or give up and say so: a pure function
// of the certificate, the failures so far and the time, so tests move time instead of
// sleeping (DESIGN.md "Rotation time").

#include <string>

#include "absl/time/time.h"
#include "pki/certificate.h"
#include "pki/rotation.h"

namespace relay::rotator {

struct RetryPolicy {
  absl::Duration initial = absl::Seconds(1);
  // The longest wait between retries; after PERMISSION_DENIED (deregistered) the server
  // keeps refusing until an operator admits the cluster again, so the rotator asks again
  // only this often: not hammering, and back within this long after the admit.
  absl::Duration max = absl::Minutes(2);
};

// Capped exponential backoff with jitter: the nth failure (n >= 1) waits between half
// and all of min(max, initial * 2^(n-1)); `jitter01` in [0, 1) picks where.
absl::Duration RetryDelay(int failures, const RetryPolicy& policy, double jitter01);

struct RotationState {
  // A usable client certificate exists (key matches, names the cluster, chains to the
  // root); it may have expired.
  bool have_certificate = false;
  pki::CertificateInfo certificate;
  // The client secret exists but is unusable: why. (Empty with no secret at all.)
  std::string certificate_problem;
  int consecutive_failures = 0;
  absl::Time last_failure = absl::InfinitePast();
  bool last_failure_refused = false;  // PERMISSION_DENIED
  bool token_available = false;
  // The secret store cannot be read now (why), so nothing above is known.
  std::string store_problem;
  bool force = false;  // renew now, whatever the schedule and the state of the secret
  // The server asked for this certificate to be replaced by then (RenewNow, during a root
  // rotation's switch; the agent keeps it in relay-agent-state). InfiniteFuture: no ask.
  absl::Time renew_requested_at = absl::InfiniteFuture();
};

enum class Action {
  kWait,       // nothing to do before `at`
  kRenew,      // call Renew with the current certificate
  kRegister,   // expired, unusable (or forced without one): Register with the token
  kStuck,      // that, and no token: only an operator can help
  kStoreUnavailable,  // the secrets cannot be read now: count a failure, try again later
};

struct Decision {
  Action action = Action::kWait;
  absl::Time at;  // when to act (or to look again)
  std::string why;
};

Decision Decide(const RotationState& state, absl::Time now, double ratio,
                const pki::JitterSource& jitter, const RetryPolicy& policy, double retry_jitter01);

// Empty when healthy; otherwise the reason /healthz reports: the client secret is
// unusable, the certificate expired, or it is past its rotation point and the last
// renewal failed. (No secret at all is healthy: the agent has not registered yet.)
std::string HealthProblem(const RotationState& state, absl::Time now, double ratio,
                          const pki::JitterSource& jitter);

}  // namespace relay::rotator

#endif  // RELAY_ROTATOR_SCHEDULE_H_
