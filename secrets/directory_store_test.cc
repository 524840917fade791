#include "secrets/directory_store.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secrets/conformance.h"

namespace relay::secrets {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kNs[] = "gloo-mesh";
constexpr char kName[] = "relay-client-tls-secret";

std::string TempDir() {
  return relay::testing::MakeTestDir("secrets");
}

INSTANTIATE_TEST_SUITE_P(Directory, SecretStoreConformance,
                         ::testing::Values(SecretStoreFactory{"directory", []() -> std::unique_ptr<SecretStore> {
                           return *DirectorySecretStore::Create(TempDir());
                         }}));

int Mode(const std::string& path) {
  struct stat info;
  EXPECT_EQ(lstat(path.c_str(), &info), 0) << path;
  return info.st_mode & 0777;
}

// The version a consistent read carries, or -1 when its keys disagree.
long ConsistentVersion(const SecretData& data) {
  long version = -2;
  for (const auto& [key, value] : data) {
    long v = std::atol(std::string(value.substr(0, value.find(':'))).c_str());
    if (version == -2) version = v;
    if (v != version) return -1;
  }
  return data.size() == 3 ? version : -1;
}

class DirectoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir();
    store_ = *DirectorySecretStore::Create(root_, absl::Milliseconds(20));
  }
  std::string SecretPath() const { return absl::StrCat(root_, "/", kNs, "/", kName); }

  std::string root_;
  std::unique_ptr<DirectorySecretStore> store_;
};

TEST_F(DirectoryStoreTest, PutWritesTheKubeletLayoutAndGetReadsItBack) {
  SecretData data = {{"tls.crt", "CERT"}, {"tls.key", "KEY"}, {"ca.crt", "CA"}};
  ASSERT_THAT(store_->Put(kNs, kName, data), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), data);

  std::string dir = SecretPath();
  std::string target = fs::read_symlink(dir + "/..data");
  EXPECT_TRUE(absl::StartsWith(target, "..20")) << target;
  EXPECT_EQ(fs::read_symlink(dir + "/tls.key").string(), "..data/tls.key");
  EXPECT_EQ(Mode(dir + "/" + target), 0700);
  EXPECT_EQ(Mode(dir + "/" + target + "/tls.key"), 0600);
  EXPECT_EQ(Mode(dir), 0700);
  std::ifstream via_link(dir + "/tls.key");
  std::string content((std::istreambuf_iterator<char>(via_link)), {});
  EXPECT_EQ(content, "KEY");
}

TEST_F(DirectoryStoreTest, ReplaceDropsOldVersionAndRemovedKeys) {
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "1"}, {"b", "1"}}), IsOk());
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "2"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"a", "2"}}));
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(SecretPath())) {
    entries.push_back(entry.path().filename());
  }
  std::sort(entries.begin(), entries.end());
  ASSERT_EQ(entries.size(), 4u);  // ..<version>, ..data, ..lock, a
  EXPECT_EQ(entries[1], "..data");
  EXPECT_EQ(entries[2], "..lock");
  EXPECT_EQ(entries[3], "a");
}

TEST_F(DirectoryStoreTest, PlainDirectoryMadeByHandReadsTheSame) {
  fs::create_directories(SecretPath());
  std::ofstream(SecretPath() + "/ca.crt") << "ROOT";
  std::ofstream(SecretPath() + "/token") << "T";
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"ca.crt", "ROOT"}, {"token", "T"}}));
  // Writing over it converts it to the versioned layout.
  ASSERT_THAT(store_->Put(kNs, kName, {{"ca.crt", "ROOT2"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"ca.crt", "ROOT2"}}));
}

TEST_F(DirectoryStoreTest, MissingSecretIsNotFound) {
  auto data = store_->Get(kNs, kName);
  EXPECT_THAT(data, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(data.status().message(), HasSubstr(kName));
  EXPECT_THAT(store_->Delete(kNs, kName), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DirectoryStoreTest, DirectoryWithoutKeysIsNotASecretYet) {
  fs::create_directories(SecretPath() + "/..2026_01_01_00_00_00.000000001");  // a killed first write
  EXPECT_THAT(store_->Get(kNs, kName), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DirectoryStoreTest, DanglingDataLinkIsReportedAsDamage) {
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "1"}}), IsOk());
  fs::remove(SecretPath() + "/..data");
  fs::create_symlink("..2020_01_01_00_00_00.000000000", SecretPath() + "/..data");
  auto data = store_->Get(kNs, kName);
  EXPECT_THAT(data, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(data.status().message(), HasSubstr("damaged"));
  // Writing again repairs it.
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "2"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"a", "2"}}));
}

// Found by //fuzz:secrets_directory_fuzz_test: a key may start with one dot
// (".dockercfg" is a valid Secret key, and the kubelet projects it as such); only the
// kubelet's own "..*" entries are bookkeeping.
TEST_F(DirectoryStoreTest, KeyStartingWithADotReadsBack) {
  SecretData data = {{".dockercfg", "{}"}, {"a", "1"}};
  ASSERT_THAT(store_->Put(kNs, kName, data), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), data);
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "2"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"a", "2"}}));
  EXPECT_FALSE(fs::exists(fs::symlink_status(SecretPath() + "/.dockercfg")));
}

// A secret directory is read by the server and the agent; whoever can write into it
// must not make them hang or read outside it.
TEST_F(DirectoryStoreTest, HostileDirectoryCannotHangOrLeadOutside) {
  fs::create_directories(SecretPath());
  ASSERT_EQ(mkfifo((SecretPath() + "/pipe").c_str(), 0600), 0);  // open() would block on it
  auto data = store_->Get(kNs, kName);
  EXPECT_FALSE(data.ok()) << "a FIFO is not a key";
  fs::remove(SecretPath() + "/pipe");

  std::string outside = root_ + "/outside";
  fs::create_directories(outside);
  std::ofstream(outside + "/tls.key") << "NOT YOURS";
  fs::create_symlink(outside, SecretPath() + "/..data");
  data = store_->Get(kNs, kName);
  EXPECT_THAT(data, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(data.status().message(), HasSubstr("not to a version directory"));

  // A version directory holds files; a symlink in it is not followed.
  fs::remove(SecretPath() + "/..data");
  fs::create_directories(SecretPath() + "/..2026_01_01_00_00_00.000000001");
  fs::create_symlink(outside + "/tls.key", SecretPath() + "/..2026_01_01_00_00_00.000000001/tls.key");
  fs::create_symlink("..2026_01_01_00_00_00.000000001", SecretPath() + "/..data");
  data = store_->Get(kNs, kName);
  ASSERT_FALSE(data.ok() && data->count("tls.key") && data->at("tls.key") == "NOT YOURS");
}

TEST_F(DirectoryStoreTest, BadInputIsRefusedAndChangesNothing) {
  SecretData good = {{"token", "secret-value"}};
  ASSERT_THAT(store_->Put(kNs, kName, good), IsOk());
  std::string version = store_->VersionOf(kNs, kName);
  for (const SecretData& bad : std::vector<SecretData>{
           {{"../escape", "x"}},
           {{"a/b", "x"}},
           {{"", "x"}},
           {{"..data", "x"}},
           {{"big", std::string(kMaxSecretBytes + 1, 'x')}}}) {
    absl::Status status = store_->Put(kNs, kName, bad);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument)) << bad.begin()->first;
    EXPECT_EQ(status.message().find("secret-value"), std::string::npos);
  }
  EXPECT_THAT(store_->Put(kNs, "../../etc", good), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->Get("UPPER", kName), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->VersionOf(kNs, kName), version);
  EXPECT_EQ(*store_->Get(kNs, kName), good);
}

TEST_F(DirectoryStoreTest, ListAndDelete) {
  ASSERT_THAT(store_->Put(kNs, "b-secret", {{"k", "v"}}), IsOk());
  ASSERT_THAT(store_->Put(kNs, "a-secret", {{"k", "v"}}), IsOk());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("a-secret", "b-secret"));
  ASSERT_THAT(store_->Delete(kNs, "a-secret"), IsOk());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("b-secret"));
  EXPECT_TRUE(store_->List("other-ns")->empty());
}

TEST_F(DirectoryStoreTest, WatchReportsCreateReplaceAndDelete) {
  std::atomic<int> changes{0};
  auto watch = store_->Watch(kNs, kName, [&] { changes++; });
  auto wait_for = [&](int n) {  // generous: a working watch reports within 200 ms
    for (absl::Time give_up = absl::Now() + absl::Seconds(30); changes.load() < n && absl::Now() < give_up;) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return changes.load();
  };
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "1"}}), IsOk());
  EXPECT_GE(wait_for(1), 1);
  ASSERT_THAT(store_->Put(kNs, kName, {{"a", "2"}}), IsOk());
  EXPECT_GE(wait_for(2), 2);
  ASSERT_THAT(store_->Delete(kNs, kName), IsOk());
  EXPECT_GE(wait_for(3), 3);
}

// Counted, not timed: the writer swaps a fixed number of versions, starting once both
// readers are reading, and the readers read until it is done. Threads record what they
// saw; the test thread asserts.
TEST_F(DirectoryStoreTest, ReadersNeverSeeAMixWhileAWriterSwaps) {
  constexpr long kWrites = 300;
  ASSERT_THAT(store_->Put(kNs, kName, {{"ca.crt", "0:"}, {"tls.crt", "0:"}, {"tls.key", "0:"}}), IsOk());
  std::atomic<bool> writer_done{false};
  std::atomic<int> readers_reading{0};
  std::atomic<long> reads{0}, failed_writes{0}, failed_reads{0}, mixed_reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      auto reader = *DirectorySecretStore::Create(root_);  // as another process would
      bool counted = false;
      while (!writer_done) {
        absl::StatusOr<SecretData> data = reader->Get(kNs, kName);
        if (!data.ok()) {
          failed_reads++;
        } else if (ConsistentVersion(*data) < 0) {
          mixed_reads++;
        }
        reads++;
        if (!counted) readers_reading++;
        counted = true;
      }
    });
  }
  std::thread writer([&] {
    while (readers_reading.load() < 2) std::this_thread::yield();
    for (long v = 1; v <= kWrites; ++v) {
      std::string value = absl::StrCat(v, ":", std::string(4096, 'x'));
      if (!store_->Put(kNs, kName, {{"ca.crt", value}, {"tls.crt", value}, {"tls.key", value}}).ok()) failed_writes++;
    }
    writer_done = true;
  });
  writer.join();
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(failed_writes.load(), 0);
  EXPECT_EQ(failed_reads.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_EQ(mixed_reads.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_EQ(ConsistentVersion(*store_->Get(kNs, kName)), kWrites);
}

// A writer process killed at random points always leaves a complete, readable version.
// Each round waits until the writer has finished its first write, then kills it at a
// random moment of the writes that follow: every kill lands mid-stream, so every round
// leaves a version of its own, whatever the speed of the disk.
TEST_F(DirectoryStoreTest, WriterKilledAtRandomPointsLeavesAWholeVersion) {
  std::mt19937 rng(12345);
  long first_version = 1;
  std::set<long> seen;
  constexpr int kKills = 40;
  for (int round = 0; round < kKills; ++round) {
    int progress[2];
    ASSERT_EQ(pipe(progress), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(progress[1], 1);
      std::string version = absl::StrCat(first_version);
      execl("secrets/secret_writer", "secret_writer", root_.c_str(), version.c_str(), nullptr);
      _exit(127);
    }
    close(progress[1]);
    char line[64];
    ssize_t got = read(progress[0], line, sizeof(line));  // the first write is done
    ASSERT_GT(got, 0) << "the writer reported no write";
    absl::SleepFor(absl::Microseconds(std::uniform_int_distribution<int>(0, 20000)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(progress[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited on its own: " << status;
    absl::StatusOr<SecretData> data = store_->Get(kNs, kName);
    ASSERT_THAT(data, IsOk()) << "round " << round << ": " << data.status();
    long version = ConsistentVersion(*data);
    ASSERT_GE(version, first_version) << "mixed, partial or old secret in round " << round;
    seen.insert(version);
    first_version = version + 1000000;  // each round's versions are distinct
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kKills));
  // Leftovers of killed writers are cleaned by the next successful write.
  ASSERT_THAT(store_->Put(kNs, kName, {{"ca.crt", "1:"}, {"tls.crt", "1:"}, {"tls.key", "1:"}}), IsOk());
  int dot_dirs = 0;
  for (const auto& entry : fs::directory_iterator(SecretPath())) {
    std::string name = entry.path().filename();
    if (absl::StartsWith(name, "..") && name != "..data" && name != "..lock") dot_dirs++;
  }
  EXPECT_EQ(dot_dirs, 1);
}

}  // namespace
}  // namespace relay::secrets
