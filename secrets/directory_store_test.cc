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
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::secrets {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kNs[] = "gloo-mesh";
constexpr char kName[] = "relay-client-tls-secret";

std::string TempDir() {
  std::string tmpl = absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp",
                                  "/secrets.XXXXXX");
  return mkdtemp(tmpl.data());
}

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
  ASSERT_TRUE(store_->Put(kNs, kName, data).ok());
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
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "1"}, {"b", "1"}}).ok());
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "2"}}).ok());
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
  ASSERT_TRUE(store_->Put(kNs, kName, {{"ca.crt", "ROOT2"}}).ok());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"ca.crt", "ROOT2"}}));
}

TEST_F(DirectoryStoreTest, MissingSecretIsNotFound) {
  auto data = store_->Get(kNs, kName);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(data.status().message(), HasSubstr(kName));
  EXPECT_EQ(store_->Delete(kNs, kName).code(), absl::StatusCode::kNotFound);
}

TEST_F(DirectoryStoreTest, DirectoryWithoutKeysIsNotASecretYet) {
  fs::create_directories(SecretPath() + "/..2026_01_01_00_00_00.000000001");  // a killed first write
  EXPECT_EQ(store_->Get(kNs, kName).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DirectoryStoreTest, DanglingDataLinkIsReportedAsDamage) {
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "1"}}).ok());
  fs::remove(SecretPath() + "/..data");
  fs::create_symlink("..2020_01_01_00_00_00.000000000", SecretPath() + "/..data");
  auto data = store_->Get(kNs, kName);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(data.status().message(), HasSubstr("damaged"));
  // Writing again repairs it.
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "2"}}).ok());
  EXPECT_EQ(*store_->Get(kNs, kName), (SecretData{{"a", "2"}}));
}

TEST_F(DirectoryStoreTest, BadInputIsRefusedAndChangesNothing) {
  SecretData good = {{"token", "secret-value"}};
  ASSERT_TRUE(store_->Put(kNs, kName, good).ok());
  std::string version = store_->VersionOf(kNs, kName);
  for (const SecretData& bad : std::vector<SecretData>{
           {{"../escape", "x"}},
           {{"a/b", "x"}},
           {{"", "x"}},
           {{"..data", "x"}},
           {{"big", std::string(kMaxSecretBytes + 1, 'x')}}}) {
    absl::Status status = store_->Put(kNs, kName, bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad.begin()->first;
    EXPECT_EQ(status.message().find("secret-value"), std::string::npos);
  }
  EXPECT_EQ(store_->Put(kNs, "../../etc", good).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get("UPPER", kName).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->VersionOf(kNs, kName), version);
  EXPECT_EQ(*store_->Get(kNs, kName), good);
}

TEST_F(DirectoryStoreTest, ListAndDelete) {
  ASSERT_TRUE(store_->Put(kNs, "b-secret", {{"k", "v"}}).ok());
  ASSERT_TRUE(store_->Put(kNs, "a-secret", {{"k", "v"}}).ok());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("a-secret", "b-secret"));
  ASSERT_TRUE(store_->Delete(kNs, "a-secret").ok());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("b-secret"));
  EXPECT_TRUE(store_->List("other-ns")->empty());
}

TEST_F(DirectoryStoreTest, WatchReportsCreateReplaceAndDelete) {
  std::atomic<int> changes{0};
  auto watch = store_->Watch(kNs, kName, [&] { changes++; });
  auto wait_for = [&](int n) {
    for (int i = 0; i < 250 && changes.load() < n; ++i) absl::SleepFor(absl::Milliseconds(20));
    return changes.load();
  };
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "1"}}).ok());
  EXPECT_GE(wait_for(1), 1);
  ASSERT_TRUE(store_->Put(kNs, kName, {{"a", "2"}}).ok());
  EXPECT_GE(wait_for(2), 2);
  ASSERT_TRUE(store_->Delete(kNs, kName).ok());
  EXPECT_GE(wait_for(3), 3);
}

TEST_F(DirectoryStoreTest, ReadersNeverSeeAMixWhileAWriterSwaps) {
  std::atomic<bool> stop{false};
  std::atomic<long> written{0};
  ASSERT_TRUE(store_->Put(kNs, kName, {{"ca.crt", "0:"}, {"tls.crt", "0:"}, {"tls.key", "0:"}}).ok());
  std::thread writer([&] {
    for (long v = 1; !stop; ++v) {
      std::string value = absl::StrCat(v, ":", std::string(4096, 'x'));
      ASSERT_TRUE(store_->Put(kNs, kName, {{"ca.crt", value}, {"tls.crt", value}, {"tls.key", value}}).ok());
      written = v;
    }
  });
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      auto reader = *DirectorySecretStore::Create(root_);  // as another process would
      while (!stop) {
        absl::StatusOr<SecretData> data = reader->Get(kNs, kName);
        ASSERT_TRUE(data.ok()) << data.status();
        ASSERT_GE(ConsistentVersion(*data), 0);
        reads++;
      }
    });
  }
  absl::SleepFor(absl::Seconds(1.5));
  stop = true;
  writer.join();
  for (auto& reader : readers) reader.join();
  EXPECT_GT(written.load(), 20);
  EXPECT_GT(reads.load(), 100);
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
    ASSERT_TRUE(data.ok()) << "round " << round << ": " << data.status();
    long version = ConsistentVersion(*data);
    ASSERT_GE(version, first_version) << "mixed, partial or old secret in round " << round;
    seen.insert(version);
    first_version = version + 1000000;  // each round's versions are distinct
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kKills));
  // Leftovers of killed writers are cleaned by the next successful write.
  ASSERT_TRUE(store_->Put(kNs, kName, {{"ca.crt", "1:"}, {"tls.crt", "1:"}, {"tls.key", "1:"}}).ok());
  int dot_dirs = 0;
  for (const auto& entry : fs::directory_iterator(SecretPath())) {
    std::string name = entry.path().filename();
    if (absl::StartsWith(name, "..") && name != "..data" && name != "..lock") dot_dirs++;
  }
  EXPECT_EQ(dot_dirs, 1);
}

}  // namespace
}  // namespace relay::secrets
