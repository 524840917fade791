#include "state/conformance.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr absl::Duration kWait = absl::Seconds(20);

}  // namespace

void StateStoreConformance::SetUp() {
  dir_ = relay::testing::MakeTestDir("state");
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
  ASSERT_THAT(created, IsOk());
  EXPECT_GT(*created, 0);
  EXPECT_THAT(store_->CompareAndSetAndWait("ca/root", "B", 0), StatusIs(absl::StatusCode::kAlreadyExists));
  absl::StatusOr<Record> read = store_->Get("ca/root");
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(read->value, "A");
  EXPECT_EQ(read->revision, *created);
}

TEST_P(StateStoreConformance, CompareAndSetNeedsTheCurrentRevision) {
  int64_t first = *store_->CompareAndSetAndWait("clusters/east", "v1", 0);
  absl::StatusOr<int64_t> second = store_->CompareAndSetAndWait("clusters/east", "v2", first);
  ASSERT_THAT(second, IsOk());
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
  ASSERT_THAT(store_->CompareAndSetAndWait("tokens/abc", std::nullopt, revision), IsOk());
  EXPECT_THAT(store_->Get("tokens/abc"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->CompareAndSetAndWait("tokens/abc", std::nullopt, revision), StatusIs(absl::StatusCode::kNotFound));
  // And it can be created again.
  EXPECT_THAT(store_->CompareAndSetAndWait("tokens/abc", "y", 0), IsOk());
}

TEST_P(StateStoreConformance, ListReturnsExactlyThePrefix) {
  for (const char* key : {"clusters/east", "clusters/west", "clusters-x", "tokens/a"}) {
    ASSERT_THAT(store_->CompareAndSetAndWait(key, key, 0), IsOk());
  }
  absl::StatusOr<std::map<std::string, Record>> clusters = store_->List("clusters/");
  ASSERT_THAT(clusters, IsOk());
  ASSERT_EQ(clusters->size(), 2u);
  EXPECT_EQ(clusters->begin()->first, "clusters/east");
  EXPECT_EQ(clusters->begin()->second.value, "clusters/east");
  EXPECT_EQ(std::next(clusters->begin())->first, "clusters/west");
}

TEST_P(StateStoreConformance, BadKeysAndOversizedValuesAreRefused) {
  for (const char* key : {"", "/abs", "with space", "tab\there"}) {
    EXPECT_THAT(store_->CompareAndSetAndWait(key, "x", 0), StatusIs(absl::StatusCode::kInvalidArgument)) << key;
  }
  // A record is one line, in every backend (the local one keeps a line per write).
  EXPECT_THAT(store_->CompareAndSetAndWait("clusters/east", "two\nlines", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("newline")));
  EXPECT_THAT(store_->Get("clusters/east"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->CompareAndSetAndWait("big", std::string(kMaxRecordBytes + 1, 'x'), 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->CompareAndSetAndWait("big", std::string(kMaxRecordBytes, 'x'), 0), IsOk());
}

// Consume-one-use, built on compare-and-set: eight writers race for three uses of a
// token; exactly three win, whatever the interleaving.
TEST_P(StateStoreConformance, ConsumeOneUseIsExactlyOnceUnderRacingWriters) {
  ASSERT_THAT(store_->CompareAndSetAndWait("bootstrap-tokens/t", "3", 0), IsOk());
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
  ASSERT_THAT(store_->CompareAndSetAndWait("tokens/x", "ignored", 0), IsOk());
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
  ASSERT_THAT(store_->CompareAndSetAndWait("clusters/west", "w", 0), IsOk());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(count(), 3u);
}

// `done` runs on a store thread, and may write again (a gRPC handler finishing from
// it may start the next write at once).
TEST_P(StateStoreConformance, DoneRunsOnAStoreThreadAndMayWriteAgain) {
  // What the callbacks saw, shared with them: they may still be returning from Notify()
  // when this test goes on (common/sync_wait.h). They record; this thread asserts.
  struct Seen {
    absl::Notification done;
    std::thread::id thread;
    absl::StatusOr<int64_t> outcome;
  };
  std::thread::id caller = std::this_thread::get_id();
  auto second = std::make_shared<Seen>();
  store_->CompareAndSet("clusters/east", "v1", 0, [this, second](absl::StatusOr<int64_t> first) {
    second->thread = std::this_thread::get_id();
    second->outcome = store_->CompareAndSetAndWait("clusters/east", "v2", first.ok() ? *first : -1);
    second->done.Notify();
  });
  ASSERT_TRUE(second->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_NE(second->thread, caller);
  EXPECT_THAT(second->outcome, IsOk());
  // A refusal is also told on a store thread.
  auto refused = std::make_shared<Seen>();
  store_->CompareAndSet("clusters/east", "v3", 0, [refused](absl::StatusOr<int64_t> outcome) {
    refused->thread = std::this_thread::get_id();
    refused->outcome = std::move(outcome);
    refused->done.Notify();
  });
  ASSERT_TRUE(refused->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_NE(refused->thread, caller);
  EXPECT_THAT(refused->outcome, StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_P(StateStoreConformance, WritesSurviveReopening) {
  if (!GetParam().persistent) GTEST_SKIP() << GetParam().name << " keeps nothing across opens (by design)";
  int64_t east = *store_->CompareAndSetAndWait("clusters/east", "v1", 0);
  ASSERT_THAT(store_->CompareAndSetAndWait("clusters/east", "v2", east), IsOk());
  int64_t gone = *store_->CompareAndSetAndWait("clusters/gone", "x", 0);
  ASSERT_THAT(store_->CompareAndSetAndWait("clusters/gone", std::nullopt, gone), IsOk());
  ASSERT_THAT(store_->secrets().Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "root"}}), IsOk());
  Reopen();
  absl::StatusOr<Record> read = store_->Get("clusters/east");
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(read->value, "v2");
  EXPECT_THAT(store_->Get("clusters/gone"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ((*store_->secrets().Get("gloo-mesh", "relay-root-tls-secret"))["ca.crt"], "root");
  // The revision read after reopening is the one to write against.
  EXPECT_THAT(store_->CompareAndSetAndWait("clusters/east", "v3", read->revision), IsOk());
}

TEST_P(StateStoreConformance, SecretsCreateIfAbsent) {
  secrets::SecretStore& secrets = store_->secrets();
  ASSERT_THAT(secrets.Create("gloo-mesh", "relay-identity-token-secret", {{"token", "first"}}), IsOk());
  EXPECT_THAT(secrets.Create("gloo-mesh", "relay-identity-token-secret", {{"token", "second"}}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ((*secrets.Get("gloo-mesh", "relay-identity-token-secret"))["token"], "first");
  ASSERT_THAT(secrets.Put("gloo-mesh", "relay-identity-token-secret", {{"token", "third"}}), IsOk());
  EXPECT_EQ((*secrets.Get("gloo-mesh", "relay-identity-token-secret"))["token"], "third");
  EXPECT_THAT(*secrets.List("gloo-mesh"), ElementsAre("relay-identity-token-secret"));
}

}  // namespace
}  // namespace relay::state
