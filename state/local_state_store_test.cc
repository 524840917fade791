// The local backend's own behaviour, beyond the contract (conformance.h): its journal
// file, what it does with damage, compaction and repair.
#include "state/local_state_store.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::ReadFileBytes;
using ::relay::testing::StatusIs;
using ::relay::testing::WriteFileBytes;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class LocalStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = relay::testing::MakeTestDir("local");
    path_ = LocalStateStore::JournalPath(dir_, "gloo-mesh");
  }
  absl::StatusOr<std::unique_ptr<LocalStateStore>> Open() {
    LocalStateOptions options;
    options.dir = dir_;
    options.repair_command = "relayctl registry repair --mgmt_secrets_dir=/x";
    return LocalStateStore::Open(options);
  }
  size_t Lines() {
    std::istringstream in(ReadFileBytes(path_));
    std::string line;
    size_t count = 0;
    while (std::getline(in, line)) count++;
    return count;
  }

  // Three records, the last one's value then damaged by one byte.
  std::string WriteThreeAndDamageTheLast() {
    {
      auto store = *Open();
      EXPECT_THAT(store->CompareAndSetAndWait("clusters/east", "state=registered", 0), IsOk());
      EXPECT_THAT(store->CompareAndSetAndWait("clusters/west", "state=registered", 0), IsOk());
      int64_t west = store->Get("clusters/west")->revision;
      EXPECT_THAT(store->CompareAndSetAndWait("clusters/west", "state=deregistered", west), IsOk());
    }
    std::string content = ReadFileBytes(path_);
    size_t at = content.find("state=deregistered");
    EXPECT_NE(at, std::string::npos);
    content[at + 6] = 'r';  // "reregistered": a valid-looking word
    WriteFileBytes(path_, content);
    return content;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(LocalStateStoreTest, TheJournalHasAHeaderAndChecksummedLines) {
  {
    auto store = *Open();
    ASSERT_THAT(store->CompareAndSetAndWait("clusters/east", "v1", 0), IsOk());
  }
  std::istringstream content(ReadFileBytes(path_));
  std::string header, record;
  std::getline(content, header);
  std::getline(content, record);
  EXPECT_EQ(header, kJournalHeader);
  EXPECT_THAT(record, ::testing::MatchesRegex("[0-9a-f]{8} put\tclusters/east\tv1"));
}

// One changed byte must not be read as something else: Open stops with the file, the
// offset and the repair command, and the file stays as it was.
TEST_F(LocalStateStoreTest, ADamagedLineStopsOpeningAndIsNeverCompactedAway) {
  std::string content = WriteThreeAndDamageTheLast();
  absl::StatusOr<std::unique_ptr<LocalStateStore>> damaged = Open();
  ASSERT_FALSE(damaged.ok());
  EXPECT_THAT(damaged, StatusIs(absl::StatusCode::kDataLoss));
  size_t line_start = content.rfind('\n', content.find("state=reregistered")) + 1;
  EXPECT_THAT(damaged.status().message(), HasSubstr(path_));
  EXPECT_THAT(damaged.status().message(), HasSubstr(absl::StrCat("at byte ", line_start)));
  EXPECT_THAT(damaged.status().message(), HasSubstr("checksum"));
  EXPECT_THAT(damaged.status().message(), HasSubstr("relayctl registry repair --mgmt_secrets_dir=/x"));
  EXPECT_EQ(ReadFileBytes(path_), content);  // untouched
}

TEST_F(LocalStateStoreTest, ALineCutShortByACrashIsDroppedSilently) {
  {
    auto store = *Open();
    ASSERT_THAT(store->CompareAndSetAndWait("clusters/east", "v1", 0), IsOk());
  }
  std::ofstream(path_, std::ios::app) << "0badf00d put\tclusters/east\tv2-cut-sh";
  auto store = Open();
  ASSERT_THAT(store, IsOk());
  EXPECT_EQ((*store)->Get("clusters/east")->value, "v1");
}

TEST_F(LocalStateStoreTest, RepairKeepsTheDamagedFileAsideAndEveryWholeLine) {
  std::string content = WriteThreeAndDamageTheLast();
  auto accept_all = [](absl::string_view, absl::string_view) { return absl::OkStatus(); };
  absl::StatusOr<LocalStateStore::Repair> repair = LocalStateStore::RepairJournal(path_, absl::FromUnixSeconds(1000), accept_all);
  ASSERT_THAT(repair, IsOk());
  EXPECT_EQ(repair->kept, 2u);
  ASSERT_EQ(repair->dropped.size(), 1u);
  EXPECT_THAT(repair->dropped[0], HasSubstr("clusters/west"));
  EXPECT_EQ(repair->damaged_copy, path_ + ".damaged-1000");
  EXPECT_EQ(ReadFileBytes(repair->damaged_copy), content);
  // West's last whole line is what it was before the damaged one.
  auto store = *Open();
  EXPECT_EQ(store->Get("clusters/west")->value, "state=registered");
  EXPECT_EQ(store->Get("clusters/east")->value, "state=registered");
  store.reset();
  // A whole journal needs no repair.
  absl::StatusOr<LocalStateStore::Repair> again = LocalStateStore::RepairJournal(path_, absl::FromUnixSeconds(2000), accept_all);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->dropped.empty());
  EXPECT_TRUE(again->damaged_copy.empty());
}

TEST_F(LocalStateStoreTest, TheJournalIsCompactedWhenItGrows) {
  auto store = *Open();
  int64_t revision = 0;
  for (int i = 0; i < 4200; ++i) {
    absl::StatusOr<int64_t> written = store->CompareAndSetAndWait("clusters/east", absl::StrCat("v", i), revision);
    ASSERT_THAT(written, IsOk());
    revision = *written;
  }
  EXPECT_LT(Lines(), 4200u);
  store.reset();
  EXPECT_EQ((*Open())->Get("clusters/east")->value, "v4199");
}

// Journals of earlier versions hold one "<cluster>\t<fields>" line per cluster and no
// checksums: they are read as clusters/<cluster> records and rewritten.
TEST_F(LocalStateStoreTest, EarlierJournalsAreReadAsClusterRecords) {
  WriteFileBytes(path_, "east\tstate=registered\nwest\tstate=registered\nwest\tstate=deregistered\n");
  {
    auto store = Open();
    ASSERT_THAT(store, IsOk());
    EXPECT_EQ((*store)->Get("clusters/east")->value, "state=registered");
    EXPECT_EQ((*store)->Get("clusters/west")->value, "state=deregistered");
    EXPECT_THAT((*store)->Describe("clusters/east"), HasSubstr(path_));
  }
  EXPECT_THAT(ReadFileBytes(path_), StartsWith(kJournalHeader));
  WriteFileBytes(path_, "East Cluster\tstate=registered\n");
  absl::StatusOr<std::unique_ptr<LocalStateStore>> bad = Open();
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(bad.status().message(), HasSubstr("at byte 0 (line 1)"));
}

TEST_F(LocalStateStoreTest, ASecondOpenOfTheDirectoryInAnotherProcessIsRefused) {
  auto store = *Open();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(Open().status().code() == absl::StatusCode::kFailedPrecondition ? 0 : 1);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

size_t ThreadsOfThisProcess() {
  size_t count = 0;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return 0;
  while (dirent* entry = readdir(tasks)) count += entry->d_name[0] != '.';
  closedir(tasks);
  return count;
}

// relayctl and the fuzzers open the journal only to read it: that costs no threads
// (7x the journal fuzzer's executions per second under ASan); the first write starts them.
TEST_F(LocalStateStoreTest, OpeningToReadStartsNoThreadAndTheFirstWriteDoes) {
  { ASSERT_THAT((*Open())->CompareAndSetAndWait("clusters/east", "state=registered", 0), IsOk()); }
  size_t before = ThreadsOfThisProcess();
  ASSERT_GT(before, 0u);
  auto store = *Open();
  ASSERT_THAT(store->Get("clusters/east"), IsOk());
  ASSERT_THAT(store->List("clusters/"), IsOk());
  EXPECT_EQ(ThreadsOfThisProcess(), before);
  int64_t east = store->Get("clusters/east")->revision;
  EXPECT_THAT(store->CompareAndSetAndWait("clusters/east", "state=deregistered", east), IsOk());
  EXPECT_GT(ThreadsOfThisProcess(), before);
  store.reset();
  EXPECT_EQ((*Open())->Get("clusters/east")->value, "state=deregistered");
}

// gRPC may run a new call's handler in the thread that finishes another call, that is
// in a store callback; that handler may write and wait.
TEST_F(LocalStateStoreTest, ACallbackMayWriteAndWait) {
  auto store = *Open();
  // Shared with the callback, which records; this thread asserts.
  struct Seen {
    absl::Notification finished;
    absl::StatusOr<int64_t> first, second;
  };
  auto seen = std::make_shared<Seen>();
  store->CompareAndSet("a", "1", 0, [&store, seen](absl::StatusOr<int64_t> first) {
    seen->first = std::move(first);
    seen->second = store->CompareAndSetAndWait("b", "2", 0);
    seen->finished.Notify();
  });
  ASSERT_TRUE(seen->finished.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_THAT(seen->first, IsOk());
  EXPECT_THAT(seen->second, IsOk());
}

}  // namespace
}  // namespace relay::state
