#include "mgmt/source_rate_limiter.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace relay::mgmt {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

TEST(SourceRateLimiterTest, EachSourceHasItsOwnBurstAndRate) {
  SourceRateLimiter limiter(/*per_second=*/2, /*burst=*/5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Take("10.0.0.1", kStart).allowed) << i;
  SourceRateLimiter::Decision refused = limiter.Take("10.0.0.1", kStart);
  EXPECT_FALSE(refused.allowed);
  EXPECT_TRUE(refused.newly_limited);
  EXPECT_FALSE(limiter.Take("10.0.0.1", kStart).newly_limited) << "said once per episode";
  // Another source is not affected.
  EXPECT_TRUE(limiter.Take("10.0.0.2", kStart).allowed);
  // Two a second come back.
  EXPECT_FALSE(limiter.Take("10.0.0.1", kStart + absl::Milliseconds(400)).allowed);
  EXPECT_TRUE(limiter.Take("10.0.0.1", kStart + absl::Milliseconds(1000)).allowed);  // 2 there, 1 left
  EXPECT_TRUE(limiter.Take("10.0.0.1", kStart + absl::Milliseconds(1500)).allowed);  // 2 there, 1 left
  EXPECT_TRUE(limiter.Take("10.0.0.1", kStart + absl::Milliseconds(1500)).allowed);
  SourceRateLimiter::Decision again = limiter.Take("10.0.0.1", kStart + absl::Milliseconds(1500));
  EXPECT_FALSE(again.allowed);
  EXPECT_TRUE(again.newly_limited) << "a new episode after an allowed one";
}

TEST(SourceRateLimiterTest, ZeroRateMeansNoLimit) {
  SourceRateLimiter limiter(0, 0);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(limiter.Take("10.0.0.1", kStart).allowed);
  EXPECT_EQ(limiter.TrackedForTesting(), 0u);
}

TEST(SourceRateLimiterTest, IdleSourcesAreForgottenSoMemoryStaysBounded) {
  SourceRateLimiter limiter(/*per_second=*/10, /*burst=*/10);
  for (int i = 0; i < 10000; ++i) limiter.Take(absl::StrCat("source-", i), kStart);
  EXPECT_EQ(limiter.TrackedForTesting(), 10000u);
  // One refill time later the next new source prunes every idle one.
  limiter.Take("late", kStart + absl::Seconds(1));
  EXPECT_EQ(limiter.TrackedForTesting(), 1u);
}

TEST(SourceRateLimiterTest, SourceIsThePeerAddressWithoutItsPort) {
  EXPECT_EQ(SourceRateLimiter::SourceOf("ipv4:10.0.0.7:5123"), "10.0.0.7");
  EXPECT_EQ(SourceRateLimiter::SourceOf("ipv6:[::1]:80"), "::1");
  EXPECT_EQ(SourceRateLimiter::SourceOf("ipv6:[fe80::1%eth0]:80"), "fe80::1%eth0");
  EXPECT_EQ(SourceRateLimiter::SourceOf("unix:/tmp/s"), "unix:/tmp/s");
}

}  // namespace
}  // namespace relay::mgmt
