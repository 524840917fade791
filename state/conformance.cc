#include "state/conformance.h"

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"

namespace relay::state {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr absl::Duration kWait = absl::Seconds(20);

// Matches a status (or StatusOr) whose code is `code`, printing it when it is not.
MATCHER_P(StatusIs, code, "") {
  absl::Status status;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) {
    status = arg;
  } else {
    status = arg.status();
  }
  *result_listener << "status is " << status;
  return status.code() == code;
}

}  // namespace

void StateStoreConformance::SetUp() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/state.XXXXXX");
  dir_ = mkdtemp(tmpl.data());
  store_ = GetParam().open(dir_);
  ASSERT_NE(store_, nullptr);
}

void StateStoreConformance::Reopen() {
  store_.reset();
  store_ = GetParam().open(dir_);
  ASSERT_NE(store_, nullptr);
}

namespace {

TEST_P(StateStoreConformance, AMissingKeyIsNotFound) {
  EXPECT_THAT(store_->Get("clusters/east"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(store_->List("clusters/")->empty());
}

TEST_P(StateStoreConformance, CreateIfAbsentWritesOnceAndRefusesTheSecond) {
  absl::StatusOr<int64_t> created = store_->CompareAndSetAndWait("ca/root", "A", 0);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(*created, 0);
  EXPECT_THAT(store_->CompareAndSetAndWait("ca/root", "B", 0), StatusIs(absl::StatusCode::kAlreadyExists));
  absl::StatusOr<Record> read = store_->Get("ca/root");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->value, "A");
  EXPECT_EQ(read->revision, *created);
}

TEST_P(StateStoreConformance, CompareAndSetNeedsTheCurrentRevision) {
  int64_t first = *store_->CompareAndSetAndWait("clusters/east", "v1", 0);
  absl::StatusOr<int64_t> second = store_->CompareAndSetAndWait("clusters/east", "v2", first);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GT(*second, first);
  // A writer that read before the second write is refused, and changes nothing.
  EXPECT_THAT(store_->CompareAndSetAndWait("clusters/east", "stale", first), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(store_->Get("clusters/east")->value, "v2");
  // Revisions grow across keys too.
  EXPECT_GT(*store_->CompareAndSetAndWait("clusters/west", "w", 0), *second);
}

TEST_P(StateStoreConformance, DeleteNeedsTheCurrentRevision) {
  int64_t revision = *store_->CompareAndSetAndWait("tokens/abc", "x", 0);
  EXPECT_THAT(store_->CompareAndSetAndWait("tokens/abc", std::nullopt, revision + 100),
              StatusIs(absl::StatusCode::kAborted));
  ASSERT_TRUE(store_->CompareAndSetAndWait("tokens/abc", std::nullopt, revision).ok());
  EXPECT_THAT(store_->Get("tokens/abc"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->CompareAndSetAndWait("tokens/abc", std::nullopt, revision), StatusIs(absl::StatusCode::kNotFound));
  // And it can be created again.
  EXPECT_TRUE(store_->CompareAndSetAndWait("tokens/abc", "y", 0).ok());
}

TEST_P(StateStoreConformance, ListReturnsExactlyThePrefix) {
  for (const char* key : {"clusters/east", "clusters/west", "clusters-x", "tokens/a"}) {
    ASSERT_TRUE(store_->CompareAndSetAndWait(key, key, 0).ok());
  }
  absl::StatusOr<std::map<std::string, Record>> clusters = store_->List("clusters/");
  ASSERT_TRUE(clusters.ok()) << clusters.status();
  ASSERT_EQ(clusters->size(), 2u);
  EXPECT_EQ(clusters->begin()->first, "clusters/east");
  EXPECT_EQ(clusters->begin()->second.value, "clusters/east");
  EXPECT_EQ(std::next(clusters->begin())->first, "clusters/west");
}

TEST_P(StateStoreConformance, BadKeysAndOversizedValuesAreRefused) {
  for (const char* key : {"", "/abs", "with space", "tab\there"}) {
    EXPECT_THAT(store_->CompareAndSetAndWait(key, "x", 0), StatusIs(absl::StatusCode::kInvalidArgument)) << key;
  }
  EXPECT_THAT(store_->CompareAndSetAndWait("big", std::string(kMaxRecordBytes + 1, 'x'), 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(store_->CompareAndSetAndWait("big", std::string(kMaxRecordBytes, 'x'), 0).ok());
}

// Consume-one-use, built on compare-and-set: eight writers race for three uses of a
// token; exactly three win, whatever the interleaving.
TEST_P(StateStoreConformance, ConsumeOneUseIsExactlyOnceUnderRacingWriters) {
  ASSERT_TRUE(store_->CompareAndSetAndWait("bootstrap-tokens/t", "3", 0).ok());
  std::atomic<int> won{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([&] {
      for (int attempt = 0; attempt < 1000; ++attempt) {
        absl::StatusOr<Record> read = store_->Get("bootstrap-tokens/t");
        int uses = 0;
        if (!read.ok() || !absl::SimpleAtoi(read->value, &uses)) {
          failures++;
          return;
        }
        if (uses == 0) return;  // used up
        absl::StatusOr<int64_t> consumed =
            store_->CompareAndSetAndWait("bootstrap-tokens/t", absl::StrCat(uses - 1), read->revision);
        if (consumed.ok()) {
          won++;
          return;
        }
        if (!absl::IsAborted(consumed.status())) {
          failures++;
          return;
        }
      }
      failures++;  // never settled
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(won.load(), 3);
  EXPECT_EQ(store_->Get("bootstrap-tokens/t")->value, "0");
}

TEST_P(StateStoreConformance, WatchSeesChangesUnderItsPrefixInOrder) {
  absl::Mutex mu;
  std::vector<Change> seen;
  std::unique_ptr<StateWatch> watch = store_->Watch("clusters/", [&](const Change& change) {
    absl::MutexLock lock(&mu);
    seen.push_back(change);
  });
  int64_t created = *store_->CompareAndSetAndWait("clusters/east", "v1", 0);
  ASSERT_TRUE(store_->CompareAndSetAndWait("tokens/x", "ignored", 0).ok());
  int64_t updated = *store_->CompareAndSetAndWait("clusters/east", "v2", created);
  int64_t deleted = *store_->CompareAndSetAndWait("clusters/east", std::nullopt, updated);
  auto count = [&] {
    absl::MutexLock lock(&mu);
    return seen.size();
  };
  absl::Time deadline = absl::Now() + kWait;
  while (count() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0].key, "clusters/east");
    EXPECT_EQ(seen[0].value, "v1");
    EXPECT_EQ(seen[0].revision, created);
    EXPECT_EQ(seen[1].value, "v2");
    EXPECT_EQ(seen[1].revision, updated);
    EXPECT_FALSE(seen[2].value.has_value());
    EXPECT_EQ(seen[2].revision, deleted);
  }
  // No callback after the watch is gone.
  watch.reset();
  ASSERT_TRUE(store_->CompareAndSetAndWait("clusters/west", "w", 0).ok());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(count(), 3u);
}

// `done` runs on a store thread, and may write again (a gRPC handler finishing from
// it may start the next write at once).
TEST_P(StateStoreConformance, DoneRunsOnAStoreThreadAndMayWriteAgain) {
  absl::Notification finished;
  std::thread::id caller = std::this_thread::get_id();
  std::thread::id first_done;
  absl::StatusOr<int64_t> second;
  store_->CompareAndSet("clusters/east", "v1", 0, [&](absl::StatusOr<int64_t> first) {
    first_done = std::this_thread::get_id();
    second = store_->CompareAndSetAndWait("clusters/east", "v2", first.ok() ? *first : -1);
    finished.Notify();
  });
  ASSERT_TRUE(finished.WaitForNotificationWithTimeout(kWait));
  EXPECT_NE(first_done, caller);
  EXPECT_TRUE(second.ok()) << second.status();
  // A refusal is also told on a store thread.
  absl::Notification refused;
  std::thread::id refused_on;
  store_->CompareAndSet("clusters/east", "v3", 0, [&](absl::StatusOr<int64_t> outcome) {
    refused_on = std::this_thread::get_id();
    EXPECT_THAT(outcome, StatusIs(absl::StatusCode::kAlreadyExists));
    refused.Notify();
  });
  ASSERT_TRUE(refused.WaitForNotificationWithTimeout(kWait));
  EXPECT_NE(refused_on, caller);
}

TEST_P(StateStoreConformance, WritesSurviveReopening) {
  if (!GetParam().persistent) GTEST_SKIP() << GetParam().name << " keeps nothing across opens (by design)";
  int64_t east = *store_->CompareAndSetAndWait("clusters/east", "v1", 0);
  ASSERT_TRUE(store_->CompareAndSetAndWait("clusters/east", "v2", east).ok());
  int64_t gone = *store_->CompareAndSetAndWait("clusters/gone", "x", 0);
  ASSERT_TRUE(store_->CompareAndSetAndWait("clusters/gone", std::nullopt, gone).ok());
  ASSERT_TRUE(store_->secrets().Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "root"}}).ok());
  Reopen();
  absl::StatusOr<Record> read = store_->Get("clusters/east");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->value, "v2");
  EXPECT_THAT(store_->Get("clusters/gone"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ((*store_->secrets().Get("gloo-mesh", "relay-root-tls-secret"))["ca.crt"], "root");
  // The revision read after reopening is the one to write against.
  EXPECT_TRUE(store_->CompareAndSetAndWait("clusters/east", "v3", read->revision).ok());
}

TEST_P(StateStoreConformance, SecretsCreateIfAbsent) {
  secrets::SecretStore& secrets = store_->secrets();
  ASSERT_TRUE(secrets.Create("gloo-mesh", "relay-identity-token-secret", {{"token", "first"}}).ok());
  EXPECT_THAT(secrets.Create("gloo-mesh", "relay-identity-token-secret", {{"token", "second"}}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ((*secrets.Get("gloo-mesh", "relay-identity-token-secret"))["token"], "first");
  ASSERT_TRUE(secrets.Put("gloo-mesh", "relay-identity-token-secret", {{"token", "third"}}).ok());
  EXPECT_EQ((*secrets.Get("gloo-mesh", "relay-identity-token-secret"))["token"], "third");
  EXPECT_THAT(*secrets.List("gloo-mesh"), ElementsAre("relay-identity-token-secret"));
}

}  // namespace
}  // namespace relay::state
