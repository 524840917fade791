#include "mgmt/connection_directory.h"

#include "common/process_testing.h"
#include "gtest/gtest.h"
#include "state/state_store.h"

namespace relay::mgmt {
namespace {

using ::relay::testing::WaitFor;

constexpr absl::Duration kPatience = absl::Seconds(30);

// Two replicas on one store: each sees the other's streams, never its own, and a
// replica that stops vouching takes its streams with it once its ttl runs out.
TEST(ConnectionDirectoryTest, StreamsOfOtherLiveReplicasAreSeenAndDieWithTheirReplica) {
  std::unique_ptr<state::StateStore> store = state::NewMemoryStateStore();
  auto b = std::make_unique<ConnectionDirectory>(store.get(), "replica-b", absl::Seconds(30));
  auto a = std::make_unique<ConnectionDirectory>(store.get(), "replica-a", absl::Seconds(2));
  a->Connected("east", "AA01");
  ASSERT_TRUE(WaitFor([&] { return b->HeldElsewhere("east").has_value(); }, kPatience));
  EXPECT_EQ(b->HeldElsewhere("east")->replica, "replica-a");
  EXPECT_EQ(b->HeldElsewhere("east")->serial, "AA01");
  EXPECT_FALSE(a->HeldElsewhere("east").has_value());  // its own

  // The stream moves to B: A's late "disconnected" does not remove B's entry.
  b->Connected("east", "AA02");
  ASSERT_TRUE(WaitFor([&] { return a->HeldElsewhere("east").has_value(); }, kPatience));
  a->Disconnected("east");
  a->Connected("west", "BB01");
  ASSERT_TRUE(WaitFor([&] { return b->HeldElsewhere("west").has_value(); }, kPatience));
  EXPECT_EQ(a->HeldElsewhere("east")->serial, "AA02");

  // A dies (stops vouching): its streams stop counting within its ttl.
  a.reset();
  EXPECT_TRUE(WaitFor([&] { return !b->HeldElsewhere("west").has_value(); }, kPatience));
}

}  // namespace
}  // namespace relay::mgmt
