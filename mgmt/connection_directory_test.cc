#include "mgmt/connection_directory.h"

#include <vector>

#include "absl/strings/str_cat.h"
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

// Housekeeping: a replica silent for long enough, and the entries of the streams it
// held, are deleted; a live replica's (even a late one's) stay.
TEST(ConnectionDirectoryTest, TheLeaderForgetsDeadReplicasAndTheirConnections) {
  std::unique_ptr<state::StateStore> store = state::NewMemoryStateStore();
  const absl::Time now = absl::Now();
  // A replica that died an hour ago, holding two streams, and one just late.
  ASSERT_TRUE(store->CompareAndSetAndWait("replicas/dead", absl::StrCat(absl::ToUnixSeconds(now - absl::Hours(1))), 0).ok());
  ASSERT_TRUE(store->CompareAndSetAndWait("connections/east", "dead\tAA01", 0).ok());
  ASSERT_TRUE(store->CompareAndSetAndWait("connections/west", "dead\tAA02", 0).ok());
  ASSERT_TRUE(store->CompareAndSetAndWait("replicas/late", absl::StrCat(absl::ToUnixSeconds(now - absl::Seconds(5))), 0).ok());
  ASSERT_TRUE(store->CompareAndSetAndWait("connections/north", "late\tAA03", 0).ok());
  ASSERT_TRUE(store->CompareAndSetAndWait("connections/south", "never-recorded\tAA04", 0).ok());
  ConnectionDirectory leader(store.get(), "leader", absl::Seconds(15));
  leader.Connected("middle", "AA05");
  ASSERT_TRUE(WaitFor([&] { return store->Get("connections/middle").ok(); }, kPatience));

  EXPECT_EQ(leader.ForgetDeadReplicas(now, absl::Minutes(1)), 4);
  std::vector<std::string> left;
  absl::StatusOr<std::map<std::string, state::Record>> records = store->List("");
  ASSERT_TRUE(records.ok());
  for (const auto& [key, record] : *records) left.push_back(key);
  EXPECT_EQ(left, (std::vector<std::string>{"connections/middle", "connections/north", "replicas/late",
                                            "replicas/leader"}));
  EXPECT_EQ(leader.ForgetDeadReplicas(now, absl::Minutes(1)), 0);
}

}  // namespace
}  // namespace relay::mgmt
