#include "mgmt/root_rotation.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::mgmt {
namespace {

using ::relay::testing::StatusIs;
using ::testing::ElementsAre;

ClusterRecord Cluster(const std::string& name, const std::string& bundle, absl::Time issued_at,
                      bool deregistered = false) {
  ClusterRecord record;
  record.name = name;
  record.trust_bundle = bundle;
  record.issued_at = issued_at;
  record.deregistered = deregistered;
  return record;
}

TEST(RootRotationTest, TheRecordReadsBackAsWritten) {
  RootRotation rotation;
  rotation.phase = RootRotationPhase::kSwitch;
  rotation.previous_serial = "AA01";
  rotation.next_serial = "BB02";
  rotation.started_at = absl::FromUnixSeconds(1000);
  rotation.switched_at = absl::FromUnixMillis(2'000'123);
  absl::StatusOr<RootRotation> read = ParseRootRotation(FormatRootRotation(rotation));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->phase, RootRotationPhase::kSwitch);
  EXPECT_EQ(read->previous_serial, "AA01");
  EXPECT_EQ(read->next_serial, "BB02");
  EXPECT_EQ(read->started_at, absl::FromUnixSeconds(1000));
  EXPECT_EQ(read->switched_at, absl::FromUnixMillis(2'000'123));
  EXPECT_EQ(read->finished_at, absl::InfinitePast());
  // A field a newer server added is passed over.
  EXPECT_TRUE(ParseRootRotation(FormatRootRotation(rotation) + " window_ms=60").ok());
}

TEST(RootRotationTest, AnUnreadableRecordSaysHowToRecover) {
  EXPECT_THAT(ParseRootRotation("phase=sideways next=BB"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseRootRotation("phase=add"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseRootRotation("phase=add next=BB started_ms=soon"), StatusIs(absl::StatusCode::kDataLoss));
  absl::Status status = ParseRootRotation("").status();
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("delete it to end the rotation"));
}

TEST(RootRotationTest, TheBundleGateWaitsForEveryRegisteredClusterAndNamesTheLaggards) {
  const absl::Time t = absl::FromUnixSeconds(1000);
  std::vector<ClusterRecord> records = {Cluster("east", "new", t), Cluster("west", "old", t),
                                        Cluster("north", "", t), Cluster("gone", "old", t, /*deregistered=*/true)};
  GateProgress progress = BundleGate(records, "new");
  EXPECT_EQ(progress.clusters, 3);
  EXPECT_EQ(progress.ready, 1);
  EXPECT_FALSE(progress.passed());
  EXPECT_THAT(progress.waiting, ElementsAre("west", "north"));
  records[1].trust_bundle = records[2].trust_bundle = "new";
  EXPECT_TRUE(BundleGate(records, "new").passed());
  EXPECT_TRUE(BundleGate({}, "new").passed());
}

TEST(RootRotationTest, TheSwitchGateWantsACertificateIssuedAfterTheSwitchOrOneClientLifetime) {
  const absl::Time switched = absl::FromUnixSeconds(10'000);
  const absl::Duration lifetime = absl::Hours(1);
  std::vector<ClusterRecord> records = {Cluster("east", "", switched + absl::Seconds(5)),
                                        Cluster("west", "", switched - absl::Seconds(5)),
                                        Cluster("same-second", "", switched)};
  GateProgress progress = SwitchGate(records, switched, lifetime, switched + absl::Minutes(1));
  EXPECT_EQ(progress.ready, 1);
  EXPECT_THAT(progress.waiting, ElementsAre("west", "same-second"));
  // Not switched yet: nobody is there.
  EXPECT_EQ(SwitchGate(records, absl::InfinitePast(), lifetime, switched).ready, 0);
  // A client lifetime after the switch every earlier certificate has expired.
  EXPECT_TRUE(SwitchGate(records, switched, lifetime, switched + lifetime).passed());
}

}  // namespace
}  // namespace relay::mgmt
