#include "common/fake_clock.h"

#include <algorithm>

namespace relay {

bool FakeClock::SleepUntil(absl::Time deadline, Wakeup& wakeup) {
  {
    absl::MutexLock lock(&mu_);
    sleepers_[&wakeup] = deadline;
  }
  bool woken;
  {
    // Advance() sets the time before it locks and unlocks wakeup.mu_, which makes
    // Abseil evaluate the condition again; a time set before we got here is seen at
    // the first evaluation.
    absl::MutexLock lock(&wakeup.mu_);
    auto due = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wakeup.mu_) { return wakeup.notified_ || Now() >= deadline; };
    wakeup.mu_.Await(absl::Condition(&due));
    woken = wakeup.notified_;
    wakeup.notified_ = false;
  }
  absl::MutexLock lock(&mu_);
  sleepers_.erase(&wakeup);
  return woken;
}

void FakeClock::Advance(absl::Duration by) { AdvanceTo(Now() + std::max(by, absl::ZeroDuration())); }

void FakeClock::AdvanceTo(absl::Time time) {
  absl::MutexLock lock(&mu_);
  {
    absl::MutexLock time_lock(&time_mu_);
    if (time <= now_) return;
    now_ = time;
  }
  for (const auto& [wakeup, deadline] : sleepers_) {
    if (deadline <= time) {
      wakeup->mu_.Lock();
      wakeup->mu_.Unlock();
    }
  }
}

std::optional<absl::Time> FakeClock::AwaitSleeper(absl::Duration real_timeout,
                                                   const std::function<bool(absl::Time)>& accept) {
  absl::MutexLock lock(&mu_);
  std::optional<absl::Time> found;
  auto asleep = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    found.reset();
    for (const auto& [wakeup, deadline] : sleepers_) {
      if (deadline > Now() && accept(deadline) && (!found || deadline < *found)) found = deadline;
    }
    return found.has_value();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&asleep), real_timeout)) return std::nullopt;
  return found;
}

}  // namespace relay
