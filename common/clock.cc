#include "common/clock.h"

#include "absl/time/clock.h"

namespace relay {

Clock& Clock::Real() {
  static RealClock* const clock = new RealClock;
  return *clock;
}

absl::Time RealClock::Now() { return absl::Now(); }

bool RealClock::SleepUntil(absl::Time deadline, Wakeup& wakeup) {
  absl::MutexLock lock(&wakeup.mu_);
  // An absolute deadline: Abseil waits on the real-time clock, so a clock set forward
  // ends the sleep then, not after the interval that was left.
  bool woken = wakeup.mu_.AwaitWithDeadline(absl::Condition(&wakeup.notified_), deadline);
  wakeup.notified_ = false;
  return woken;
}

}  // namespace relay
