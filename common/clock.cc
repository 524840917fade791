#include "common/clock.h"

#include <cstdlib>

#include "absl/time/clock.h"

namespace relay {

absl::Duration TestClockOffset() {
  static const absl::Duration offset = [] {
    const char* text = std::getenv("RELAY_TEST_CLOCK_OFFSET");
    absl::Duration parsed;
    return text != nullptr && absl::ParseDuration(text, &parsed) ? parsed : absl::ZeroDuration();
  }();
  return offset;
}

absl::Time WallNow() { return absl::Now() + TestClockOffset(); }

Clock& Clock::Real() {
  static RealClock* const clock = new RealClock;
  return *clock;
}

absl::Time RealClock::Now() { return WallNow(); }

bool RealClock::SleepUntil(absl::Time deadline, Wakeup& wakeup) {
  absl::MutexLock lock(&wakeup.mu_);
  // An absolute deadline: Abseil waits on the real-time clock, so a clock set forward
  // ends the sleep then, not after the interval that was left.
  bool woken = wakeup.mu_.AwaitWithDeadline(absl::Condition(&wakeup.notified_), deadline - TestClockOffset());
  wakeup.notified_ = false;
  return woken;
}

}  // namespace relay
