#include "mgmt/cluster_registry.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secrets/directory_store.h"

namespace relay::mgmt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1767225600);

class ClusterRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(std::getenv("TEST_TMPDIR"), "/registry.XXXXXX");
    dir_ = mkdtemp(tmpl.data());
    store_ = *secrets::DirectorySecretStore::Create(dir_ + "/store");
    journal_ = dir_ + "/registry.log";
  }
  std::unique_ptr<ClusterRegistry> Load() { return *ClusterRegistry::Load(store_.get(), "gloo-mesh", journal_); }
  size_t JournalLines() {
    std::ifstream in(journal_);
    std::string line;
    size_t count = 0;
    while (std::getline(in, line)) count++;
    return count;
  }

  std::string dir_;
  std::string journal_;
  std::unique_ptr<secrets::DirectorySecretStore> store_;
};

TEST_F(ClusterRegistryTest, IssuedSerialsArePinnedAndOlderOnesRetireWhenANewerIsUsed) {
  auto registry = Load();
  ASSERT_TRUE(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow).ok());
  ASSERT_TRUE(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow).ok());
  ASSERT_TRUE(registry->RecordIssued("east", "C", kNow + absl::Hours(3), kNow).ok());
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "A").ok());  // current
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "C").ok());  // pending: becomes current
  EXPECT_EQ(registry->CheckIssuedSerial("east", "B").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry->CheckIssuedSerial("east", "A").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry->CheckIssuedSerial("east", "Z").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry->CheckIssuedSerial("west", "A").code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ClusterRegistryTest, StateSurvivesAReload) {
  {
    auto registry = Load();
    ASSERT_TRUE(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow).ok());
    ASSERT_TRUE(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow).ok());
    ASSERT_TRUE(registry->RecordIssued("west", "W", kNow + absl::Hours(1), kNow).ok());
    ASSERT_TRUE(registry->Deregister("west").ok());
    ASSERT_EQ(*registry->PushSnapshot("east", {{"a.yaml", "x"}}), 1);
    ASSERT_TRUE(registry->RecordAck("east", 1).ok());
  }
  auto registry = Load();
  std::optional<ClusterRecord> east = registry->Find("east");
  ASSERT_TRUE(east);
  EXPECT_EQ(east->current_serial, "A");
  EXPECT_THAT(east->pending_serials, ElementsAre("B"));
  EXPECT_EQ(east->not_after, kNow + absl::Hours(2));
  EXPECT_EQ(east->snapshot_version, 1);
  EXPECT_EQ(east->acked_version, 1);
  EXPECT_EQ(registry->CheckNotDeregistered("west").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry->LatestSnapshot("east")->at(0).content, "x");
  // Loading compacts: one line per cluster.
  EXPECT_EQ(JournalLines(), 2u);
}

TEST_F(ClusterRegistryTest, ConcurrentUpdatesAllReachTheDisk) {
  {
    auto registry = Load();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 100; ++i) {
          ASSERT_TRUE(registry->RecordIssued(absl::StrCat("c", t, "-", i), absl::StrCat("S", i),
                                             kNow + absl::Hours(1), kNow)
                          .ok());
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  auto registry = Load();
  EXPECT_EQ(registry->List().size(), 800u);
  EXPECT_EQ(registry->Find("c7-99")->current_serial, "S99");
}

TEST_F(ClusterRegistryTest, AsyncRecordsCallBackOnceDurableAndInOrder) {
  {
    auto registry = Load();
    absl::Mutex mu;
    std::vector<int> completed;
    int callbacks = 0;
    for (int i = 0; i < 300; ++i) {
      registry->RecordIssuedAsync("west", absl::StrCat("S", i), kNow + absl::Hours(1), kNow,
                                  [&, i](absl::Status status) {
                                    EXPECT_TRUE(status.ok()) << status;
                                    absl::MutexLock lock(&mu);
                                    completed.push_back(i);
                                    callbacks++;
                                  });
    }
    // The record is visible before it is durable.
    EXPECT_THAT(registry->Find("west")->pending_serials, ElementsAre("S296", "S297", "S298", "S299"));
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n == 300; }, &callbacks));
    for (int i = 0; i < 300; ++i) EXPECT_EQ(completed[i], i);
  }
  auto registry = Load();
  EXPECT_EQ(registry->Find("west")->current_serial, "S0");
  EXPECT_THAT(registry->Find("west")->pending_serials, ElementsAre("S296", "S297", "S298", "S299"));

  // A refused change calls back at once, and writes nothing.
  ASSERT_TRUE(registry->Deregister("west").ok());
  size_t lines = JournalLines();
  absl::Status refused;
  registry->RecordIssuedAsync("west", "T", kNow + absl::Hours(1), kNow,
                              [&](absl::Status status) { refused = std::move(status); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(JournalLines(), lines);
}

// gRPC may run a new call's handler inline in the thread that finishes another call,
// that is in a journal callback; that handler may append and wait.
TEST_F(ClusterRegistryTest, AJournalCallbackMayAppendAndWait) {
  {
    std::vector<std::string> lines;
    std::unique_ptr<Journal> journal = *Journal::Open(journal_, &lines);
    absl::Notification finished;
    journal->AppendAsync("first", [&](absl::Status status) {
      EXPECT_TRUE(status.ok());
      EXPECT_TRUE(journal->Append("second").ok());
      finished.Notify();
    });
    ASSERT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(20)));
  }
  std::vector<std::string> lines;
  ASSERT_TRUE(Journal::Open(journal_, &lines).ok());
  EXPECT_THAT(lines, ElementsAre("first", "second"));
}

TEST_F(ClusterRegistryTest, ALineCutShortByACrashIsIgnored) {
  {
    auto registry = Load();
    ASSERT_TRUE(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow).ok());
  }
  std::ofstream(journal_, std::ios::app) << "east\tstate=deregistered;current_ser";
  auto registry = Load();
  EXPECT_TRUE(registry->CheckNotDeregistered("east").ok());
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "A").ok());
}

TEST_F(ClusterRegistryTest, TheJournalIsCompactedWhenItGrows) {
  auto registry = Load();
  for (int i = 0; i < 4200; ++i) {
    ASSERT_TRUE(registry->RecordIssued("east", absl::StrCat("S", i), kNow + absl::Hours(1), kNow).ok());
  }
  EXPECT_LT(JournalLines(), 4200u);
  auto reloaded = Load();
  std::optional<ClusterRecord> east = reloaded->Find("east");
  EXPECT_EQ(east->current_serial, "S0");
  EXPECT_THAT(east->pending_serials, ElementsAre("S4196", "S4197", "S4198", "S4199"));
}

}  // namespace
}  // namespace relay::mgmt
