#ifndef RELAY_COMMON_FAKE_CLOCK_H_
#define RELAY_COMMON_FAKE_CLOCK_H_

// A clock tests move by hand. Threads sleeping on it wake when it reaches their
// deadline (or when their Wakeup is notified), never because real time passed; the test
// can wait (with a real-time bound) until the code under test has gone to sleep and see
// until when.

#include <functional>
#include <map>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace relay {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}

  absl::Time Now() override {
    absl::MutexLock lock(&time_mu_);
    return now_;
  }
  bool SleepUntil(absl::Time deadline, Wakeup& wakeup) override;

  // Moves time forward (never back) and wakes every sleeper whose deadline it reached.
  void Advance(absl::Duration by);
  void AdvanceTo(absl::Time time);

  // Waits, up to `real_timeout` of real time, until a thread sleeps on this clock until
  // a deadline after Now() that `accept` takes (default: any). That deadline (the
  // earliest such), or nullopt on timeout.
  std::optional<absl::Time> AwaitSleeper(
      absl::Duration real_timeout, const std::function<bool(absl::Time)>& accept = [](absl::Time) { return true; });

 private:
  // A leaf lock (taken last): sleepers read the time while holding their wakeup's mutex.
  absl::Mutex time_mu_;
  absl::Time now_ ABSL_GUARDED_BY(time_mu_);  // exact: deadlines need not be whole nanoseconds
  absl::Mutex mu_;
  // Sleeper -> its deadline. Wakeups are locked only while holding mu_, and a sleeper
  // leaves the map before it returns, so none is touched after it is gone.
  std::map<Wakeup*, absl::Time> sleepers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay

#endif  // RELAY_COMMON_FAKE_CLOCK_H_
