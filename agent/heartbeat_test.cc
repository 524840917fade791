#include "agent/heartbeat.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/fake_clock.h"
#include "gtest/gtest.h"

namespace relay::agent {
namespace {

// Real time a test waits for an event at most; a working heartbeat answers at once.
constexpr absl::Duration kPatience = absl::Seconds(30);
constexpr absl::Duration kInterval = absl::Seconds(5);

// A stream that records what was written, and the half-close.
class RecordingStream {
 public:
  Heartbeat::Stream AsStream() {
    return {[this](const v1::AgentMessage& message) {
              absl::MutexLock lock(&mu_);
              if (closed_) return false;
              sequences_.push_back(message.heartbeat().sequence());
              return true;
            },
            [this] {
              absl::MutexLock lock(&mu_);
              closed_ = true;
            }};
  }

  // Waits (real time) until `count` heartbeats were written.
  bool AwaitBeats(size_t count) {
    absl::MutexLock lock(&mu_);
    auto written = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sequences_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&written), kPatience);
  }
  bool AwaitClosed() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&closed_), kPatience);
  }
  std::vector<int64_t> sequences() {
    absl::MutexLock lock(&mu_);
    return sequences_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int64_t> sequences_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class HeartbeatTest : public ::testing::Test {
 protected:
  std::unique_ptr<Heartbeat> StartHeartbeat() {
    auto heartbeat = std::make_unique<Heartbeat>(clock_, kInterval, stream_.AsStream(),
                                                 [this] { return ready_to_switch_.load(); }, sent_total_);
    heartbeat->Start();
    return heartbeat;
  }

  absl::Time start_ = absl::FromUnixSeconds(1'800'000'000);
  FakeClock clock_{start_};
  RecordingStream stream_;
  std::atomic<bool> ready_to_switch_{false};
  Metrics metrics_;
  Counter& sent_total_ = metrics_.AddCounter("heartbeats_sent_total", "test");
};

// One at once, then one per interval of the clock, numbered from 1; never more.
TEST_F(HeartbeatTest, BeatsAtOnceThenEveryInterval) {
  std::unique_ptr<Heartbeat> heartbeat = StartHeartbeat();
  ASSERT_TRUE(stream_.AwaitBeats(1));
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), start_ + kInterval);

  clock_.Advance(kInterval - absl::Seconds(1));
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), start_ + kInterval);  // not yet
  EXPECT_EQ(stream_.sequences().size(), 1u);

  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(stream_.AwaitBeats(2));
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), start_ + 2 * kInterval);
  EXPECT_EQ(stream_.sequences(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(heartbeat->unanswered(), 2);
  heartbeat->OnAck();
  heartbeat->OnAck();
  EXPECT_EQ(heartbeat->unanswered(), 0);
  EXPECT_EQ(sent_total_.Value({}), 2);

  heartbeat->Stop();
  EXPECT_FALSE(heartbeat->switching());
  EXPECT_FALSE(stream_.closed());
}

// Switching to a renewed certificate: with every heartbeat answered, it half-closes at
// the next beat's time instead of beating.
TEST_F(HeartbeatTest, SwitchesAtOnceWhenEveryHeartbeatIsAnswered) {
  std::unique_ptr<Heartbeat> heartbeat = StartHeartbeat();
  ASSERT_TRUE(stream_.AwaitBeats(1));
  heartbeat->OnAck();
  ready_to_switch_ = true;
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  clock_.Advance(kInterval);
  ASSERT_TRUE(stream_.AwaitClosed());
  EXPECT_TRUE(heartbeat->switching());
  EXPECT_EQ(stream_.sequences().size(), 1u);
  EXPECT_EQ(heartbeat->unanswered(), 0);
}

// An unanswered heartbeat holds the switch until its answer comes, so none is lost.
TEST_F(HeartbeatTest, SwitchWaitsForTheLastAnswer) {
  std::unique_ptr<Heartbeat> heartbeat = StartHeartbeat();
  ASSERT_TRUE(stream_.AwaitBeats(1));
  ready_to_switch_ = true;
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  clock_.Advance(kInterval);
  // Waiting for the answer, at most one interval.
  EXPECT_EQ(clock_.AwaitSleeper(kPatience), start_ + 2 * kInterval);
  EXPECT_FALSE(stream_.closed());
  heartbeat->OnAck();
  ASSERT_TRUE(stream_.AwaitClosed());
  EXPECT_TRUE(heartbeat->switching());
  EXPECT_EQ(heartbeat->unanswered(), 0);
}

// ...but not forever: an answer that never comes costs one interval, then it switches.
TEST_F(HeartbeatTest, SwitchGivesUpWaitingAfterOneInterval) {
  std::unique_ptr<Heartbeat> heartbeat = StartHeartbeat();
  ASSERT_TRUE(stream_.AwaitBeats(1));
  ready_to_switch_ = true;
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  clock_.Advance(kInterval);
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  clock_.Advance(kInterval);
  ASSERT_TRUE(stream_.AwaitClosed());
  EXPECT_TRUE(heartbeat->switching());
  EXPECT_EQ(heartbeat->unanswered(), 1);
}

// A stream that ended stops the heartbeat: no write after it, no switch.
TEST_F(HeartbeatTest, StopEndsTheBeatsWithoutASwitch) {
  std::unique_ptr<Heartbeat> heartbeat = StartHeartbeat();
  ASSERT_TRUE(stream_.AwaitBeats(1));
  ASSERT_TRUE(clock_.AwaitSleeper(kPatience).has_value());
  heartbeat->Stop();
  clock_.Advance(10 * kInterval);
  EXPECT_EQ(stream_.sequences().size(), 1u);
  EXPECT_FALSE(heartbeat->switching());
  EXPECT_FALSE(stream_.closed());
}

}  // namespace
}  // namespace relay::agent
