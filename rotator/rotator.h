#ifndef RELAY_ROTATOR_ROTATOR_H_
#define RELAY_ROTATOR_ROTATOR_H_

// Keeps relay-client-tls-secret valid: renews it at the grace ratio over mTLS, writes
// the new one atomically (the agent's watch picks it up, its stream keeps running),
// retries with backoff, and falls back to Register with the token once it expired.
// Runs as the sidecar (//rotator:rotator) or inside the agent (--rotation=builtin).

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "enrolment/client_credentials.h"
#include "rotator/schedule.h"
#include "secrets/secret_store.h"

namespace relay::rotator {

struct RotatorOptions {
  std::string cluster;
  enrolment::WorkloadSecrets secrets;
  enrolment::ServerEndpoint server;
  double grace_period_ratio = 0.5;
  bool force = false;  // renew once right away, whatever the schedule
  RetryPolicy retry;
  Clock* clock = &Clock::Real();  // tests move time instead of sleeping
};

class Rotator {
 public:
  // `store` and `metrics` must outlive the rotator.
  Rotator(RotatorOptions options, secrets::SecretStore* store, Metrics* metrics);
  ~Rotator();

  // Renews (or registers) if due or forced, once, and returns: for init containers and
  // cron. OK when nothing was due or the renewal succeeded.
  absl::Status RunOnce();

  // Runs the loop on a thread of its own until Stop().
  void Start();
  void Stop();

  // Empty when healthy (see schedule.h HealthProblem).
  std::string HealthProblem();

 private:
  void Loop();
  bool Stopping();
  RotationState ReadState();
  Decision DecideNow();
  // Performs `action`; updates failures and metrics.
  absl::Status Act(Action action);
  void RecordFailure(const absl::Status& status);

  const RotatorOptions options_;
  secrets::SecretStore* const store_;
  // Declared once (common/metrics.h); in --rotation=builtin they join the agent's.
  struct RotatorMetrics {
    explicit RotatorMetrics(Metrics& registry);
    Gauge& certificate_expiry;
    Gauge& next_renewal;
    Counter& renewals;  // {how}
    Counter& errors;    // {reason}
  };
  RotatorMetrics metrics_;
  Clock& clock_;
  Wakeup wakeup_;  // a watched secret changed, or Stop()
  std::vector<std::unique_ptr<secrets::SecretWatch>> watches_;
  std::thread thread_;

  absl::Mutex mu_;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_failure_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool last_refused_ ABSL_GUARDED_BY(mu_) = false;
  // Drawn once per failure: a retry's time must not move each time the loop looks again.
  double retry_jitter_ ABSL_GUARDED_BY(mu_) = 0;
  bool force_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // the client secret changed under us
  std::string stuck_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::rotator

#endif  // RELAY_ROTATOR_ROTATOR_H_
