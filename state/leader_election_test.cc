#include "state/leader_election.h"

#include <atomic>
#include <memory>

#include "common/fake_clock.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;

const absl::Time kStart = absl::FromUnixSeconds(1796216400);

// A store that can be made unreachable, as an etcd that went away.
class Unreachable final : public StateStore {
 public:
  explicit Unreachable(StateStore& store) : store_(store) {}
  std::atomic<bool> down{false};

  absl::StatusOr<Record> Get(absl::string_view key) override {
    if (down) return Away();
    return store_.Get(key);
  }
  absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) override {
    if (down) return Away();
    return store_.List(prefix);
  }
  void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                     Done done) override {
    std::move(done)(CompareAndSetAndWait(std::move(key), std::move(value), expected_revision));
  }
  absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                               int64_t expected_revision) override {
    if (down) return Away();
    return store_.CompareAndSetAndWait(std::move(key), std::move(value), expected_revision);
  }
  std::unique_ptr<StateWatch> Watch(absl::string_view prefix, std::function<void(const Change&)> on_change) override {
    return store_.Watch(prefix, std::move(on_change));
  }
  std::string Describe(absl::string_view key) override { return store_.Describe(key); }
  secrets::SecretStore& secrets() override { return store_.secrets(); }

 private:
  static absl::Status Away() { return absl::UnavailableError("store unreachable"); }
  StateStore& store_;
};

class LeaderElectionTest : public ::testing::Test {
 protected:
  std::unique_ptr<LeaderElection> Candidate(const std::string& name, StateStore* store = nullptr) {
    LeaderElection::Options options;
    options.clock = &clock_;
    return std::make_unique<LeaderElection>(store ? store : store_.get(), "housekeeping", name, options);
  }

  FakeClock clock_{kStart};
  std::unique_ptr<StateStore> store_ = NewMemoryStateStore();
};

TEST_F(LeaderElectionTest, OfTwoCandidatesExactlyOneLeadsAndTheOtherKnowsWho) {
  auto a = Candidate("a");
  auto b = Candidate("b");
  for (int round = 0; round < 3; ++round) {
    a->TryAcquireOrRenew();
    b->TryAcquireOrRenew();
    EXPECT_NE(a->IsLeader(), b->IsLeader()) << "round " << round;
    clock_.Advance(absl::Seconds(2));
  }
  const std::string leader = a->IsLeader() ? "a" : "b";
  EXPECT_EQ(a->Leader(), leader);
  EXPECT_EQ(b->Leader(), leader);
}

// A holder that died without a word: its record stays, unchanged; another takes it over
// once it has seen it unchanged for lease_duration on its own clock, not before.
TEST_F(LeaderElectionTest, ACrashedLeadersRecordIsTakenOverAfterTheLease) {
  ASSERT_THAT(store_->CompareAndSetAndWait("leaders/housekeeping", "crashed", 0), IsOk());
  auto b = Candidate("b");
  b->TryAcquireOrRenew();
  EXPECT_FALSE(b->IsLeader());
  EXPECT_EQ(b->Leader(), "crashed");
  clock_.Advance(absl::Seconds(14));
  b->TryAcquireOrRenew();
  EXPECT_FALSE(b->IsLeader());
  clock_.Advance(absl::Seconds(1));
  b->TryAcquireOrRenew();
  EXPECT_TRUE(b->IsLeader());
  EXPECT_EQ(store_->Get("leaders/housekeeping")->value, "b");
}

// A leader that renews is never taken over, however long it leads.
TEST_F(LeaderElectionTest, ARenewingLeaderKeepsItsPlace) {
  auto a = Candidate("a");
  a->TryAcquireOrRenew();
  ASSERT_TRUE(a->IsLeader());
  auto b = Candidate("b");
  for (int second = 0; second < 60; second += 2) {
    a->TryAcquireOrRenew();
    b->TryAcquireOrRenew();
    EXPECT_TRUE(a->IsLeader());
    EXPECT_FALSE(b->IsLeader());
    clock_.Advance(absl::Seconds(2));
  }
}

// A leader that stops cleanly hands over at once: the next candidate's next round.
TEST_F(LeaderElectionTest, AStoppedLeaderHandsOverWithoutWaitingForTheLease) {
  auto a = Candidate("a");
  a->TryAcquireOrRenew();
  ASSERT_TRUE(a->IsLeader());
  auto b = Candidate("b");
  b->TryAcquireOrRenew();
  EXPECT_FALSE(b->IsLeader());
  a.reset();
  b->TryAcquireOrRenew();
  EXPECT_TRUE(b->IsLeader());
}

// A leader that cannot reach the store stops calling itself leader after renew_deadline,
// before another may take over (lease_duration): never two leaders at once.
TEST_F(LeaderElectionTest, ALeaderCutOffFromTheStoreStepsDownBeforeAnyoneTakesOver) {
  Unreachable cut_off(*store_);
  auto a = Candidate("a", &cut_off);
  a->TryAcquireOrRenew();
  ASSERT_TRUE(a->IsLeader());
  auto b = Candidate("b");
  b->TryAcquireOrRenew();
  cut_off.down = true;
  for (int second = 0; second <= 20; ++second) {
    a->TryAcquireOrRenew();
    b->TryAcquireOrRenew();
    EXPECT_FALSE(a->IsLeader() && b->IsLeader()) << "at " << second << " s";
    if (second < 10) {
      EXPECT_TRUE(a->IsLeader()) << "at " << second << " s";
    }
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_FALSE(a->IsLeader());
  EXPECT_TRUE(b->IsLeader());
  // Back, it finds b holding the record and follows.
  cut_off.down = false;
  a->TryAcquireOrRenew();
  EXPECT_FALSE(a->IsLeader());
  EXPECT_EQ(a->Leader(), "b");
}

}  // namespace
}  // namespace relay::state
