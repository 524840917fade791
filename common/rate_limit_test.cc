#include "common/rate_limit.h"

#include "gtest/gtest.h"

namespace relay {
namespace {

TEST(TokenBucketTest, ABurstPassesThenTheRateHolds) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  TokenBucket bucket(/*rate_per_second=*/5, /*burst=*/20, start);
  int passed = 0;
  for (int i = 0; i < 1000; ++i) passed += bucket.TryTake(start);
  EXPECT_EQ(passed, 20);
  // One second later, five more; a long pause refills to the burst, never beyond.
  passed = 0;
  for (int i = 0; i < 1000; ++i) passed += bucket.TryTake(start + absl::Seconds(1));
  EXPECT_EQ(passed, 5);
  passed = 0;
  for (int i = 0; i < 1000; ++i) passed += bucket.TryTake(start + absl::Hours(1));
  EXPECT_EQ(passed, 20);
  // A clock that steps back takes nothing and breaks nothing.
  EXPECT_FALSE(bucket.TryTake(start));
}

}  // namespace
}  // namespace relay
