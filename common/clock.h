#ifndef RELAY_COMMON_CLOCK_H_
#define RELAY_COMMON_CLOCK_H_

// Time for the agent's and the rotator's loops, injected so tests move it instead of
// sleeping: a loop asks the clock for Now() and sleeps on it until a deadline or until
// something wakes it (a changed secret, an answer, Stop()). RealClock is the wall
// clock; FakeClock (fake_clock.h) is moved by the test.

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace relay {

// Wakes one sleeper early. Notify() before the sleep is not lost: the next sleep
// returns at once (and consumes it).
class Wakeup {
 public:
  void Notify() {
    absl::MutexLock lock(&mu_);
    notified_ = true;
  }

 private:
  friend class RealClock;
  friend class FakeClock;

  absl::Mutex mu_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

// The wall clock of this process: absl::Now(), moved by RELAY_TEST_CLOCK_OFFSET when
// that is set (a signed duration such as "-3m"): the hook tests use to play a machine
// whose clock is off, since LD_PRELOAD time shifting does not reach Abseil's futex
// waits. It moves relay's own sense of time (schedules, validity checks, heartbeat
// stamps), not OpenSSL's in the TLS handshake.
absl::Time WallNow();
// The offset in force (zero when unset); a binary logs it at start when it is not zero.
absl::Duration TestClockOffset();

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;

  // Sleeps until Now() >= deadline or `wakeup` is notified, whichever is first. True
  // when woken by `wakeup`.
  virtual bool SleepUntil(absl::Time deadline, Wakeup& wakeup) = 0;

  // The process's wall clock (WallNow()).
  static Clock& Real();
};

class RealClock final : public Clock {
 public:
  absl::Time Now() override;
  bool SleepUntil(absl::Time deadline, Wakeup& wakeup) override;
};

}  // namespace relay

#endif  // RELAY_COMMON_CLOCK_H_
