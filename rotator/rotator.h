#ifndef RELAY_ROTATOR_ROTATOR_H_
#define RELAY_ROTATOR_ROTATOR_H_

// Keeps relay-client-tls-secret valid: renews it at the grace ratio over mTLS, writes
// the new one atomically (the agent's watch picks it up, its stream keeps running),
// retries with backoff, and falls back to Register with the token once it expired.
// Runs as the sidecar (//rotator:rotator) or inside the agent (--rotation=builtin).

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "enrolment/client_credentials.h"
#include "common/metrics.h"
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
  RotationState ReadState();
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
  std::unique_ptr<secrets::SecretWatch> watch_;
  std::thread thread_;
  absl::Notification stop_;

  absl::Mutex mu_;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_failure_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool last_refused_ ABSL_GUARDED_BY(mu_) = false;
  bool force_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // the secret changed under us
  std::string stuck_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::rotator

#endif  // RELAY_ROTATOR_ROTATOR_H_
