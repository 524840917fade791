#include "common/clock.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/fake_clock.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

// Generous: only a broken clock takes this long; a working one returns at once.
constexpr absl::Duration kPatience = absl::Seconds(30);

TEST(RealClockTest, AWakeupEndsTheSleepAndIsNotLostWhenEarly) {
  Wakeup wakeup;
  wakeup.Notify();  // before the sleep: the sleep returns at once, woken
  EXPECT_TRUE(Clock::Real().SleepUntil(absl::InfiniteFuture(), wakeup));

  std::thread notifier([&] { wakeup.Notify(); });
  EXPECT_TRUE(Clock::Real().SleepUntil(absl::Now() + kPatience, wakeup));
  notifier.join();
}

TEST(RealClockTest, APassedDeadlineReturnsNotWoken) {
  Wakeup wakeup;
  EXPECT_FALSE(Clock::Real().SleepUntil(absl::Now() - absl::Seconds(1), wakeup));
}

TEST(FakeClockTest, SleepersWakeWhenTimeReachesTheirDeadlineNotBefore) {
  absl::Time start = absl::FromUnixSeconds(1'000'000);
  FakeClock clock(start);
  Wakeup wakeup;
  absl::Notification returned;
  bool woken = true;
  std::thread sleeper([&] {
    woken = clock.SleepUntil(start + absl::Hours(1), wakeup);
    returned.Notify();
  });
  std::optional<absl::Time> until = clock.AwaitSleeper(kPatience);
  ASSERT_TRUE(until.has_value());
  EXPECT_EQ(*until, start + absl::Hours(1));

  clock.Advance(absl::Minutes(59));
  // Still asleep, with the same deadline: time short of it wakes nobody.
  EXPECT_EQ(clock.AwaitSleeper(kPatience), start + absl::Hours(1));
  EXPECT_FALSE(returned.HasBeenNotified());

  clock.Advance(absl::Minutes(1));
  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(kPatience));
  sleeper.join();
  EXPECT_FALSE(woken);
  EXPECT_EQ(clock.Now(), start + absl::Hours(1));
}

TEST(FakeClockTest, AWakeupEndsTheSleepWithoutMovingTime) {
  FakeClock clock(absl::FromUnixSeconds(1'000'000));
  Wakeup wakeup;
  bool woken = false;
  std::thread sleeper([&] { woken = clock.SleepUntil(absl::InfiniteFuture(), wakeup); });
  ASSERT_TRUE(clock.AwaitSleeper(kPatience).has_value());
  wakeup.Notify();
  sleeper.join();
  EXPECT_TRUE(woken);
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1'000'000));
}

TEST(FakeClockTest, TimeNeverGoesBack) {
  FakeClock clock(absl::FromUnixSeconds(100));
  clock.AdvanceTo(absl::FromUnixSeconds(50));
  clock.Advance(-absl::Seconds(10));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
}

}  // namespace
}  // namespace relay
