#include "secrets/conformance.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"

namespace relay::secrets {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::ElementsAre;

constexpr const char* kNs = kConformanceNamespace;

bool Eventually(const std::function<bool()>& condition) {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

}  // namespace

void SecretStoreConformance::SetUp() {
  store_ = GetParam().open();
  ASSERT_NE(store_, nullptr);
}

TEST_P(SecretStoreConformance, AMissingSecretIsNotFound) {
  EXPECT_THAT(store_->Get(kNs, "absent"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Delete(kNs, "absent"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SecretStoreConformance, PutReplacesTheWholeSecret) {
  ASSERT_THAT(store_->Put(kNs, "tls", {{"tls.crt", "cert-1"}, {"tls.key", "key-1"}, {"ca.crt", "ca"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, "tls"), (SecretData{{"tls.crt", "cert-1"}, {"tls.key", "key-1"}, {"ca.crt", "ca"}}));
  ASSERT_THAT(store_->Put(kNs, "tls", {{"tls.crt", "cert-2"}, {"tls.key", "key-2"}}), IsOk());
  EXPECT_EQ(*store_->Get(kNs, "tls"), (SecretData{{"tls.crt", "cert-2"}, {"tls.key", "key-2"}}));
  // Bytes, not text.
  std::string binary("\0\x01\xff\n", 4);
  ASSERT_THAT(store_->Put(kNs, "opaque", {{"token", binary}}), IsOk());
  EXPECT_EQ(store_->Get(kNs, "opaque")->at("token"), binary);
}

TEST_P(SecretStoreConformance, CreateWritesOnlyWhatIsAbsent) {
  ASSERT_THAT(store_->Create(kNs, "token", {{"token", "first"}}), IsOk());
  EXPECT_THAT(store_->Create(kNs, "token", {{"token", "second"}}), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(store_->Get(kNs, "token")->at("token"), "first");
}

TEST_P(SecretStoreConformance, BadInputIsRefusedAndChangesNothing) {
  ASSERT_THAT(store_->Put(kNs, "token", {{"token", "kept"}}), IsOk());
  EXPECT_THAT(store_->Put(kNs, "token", {{"bad/key", "x"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->Put(kNs, "Bad_Name", {{"token", "x"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->Put(kNs, "token", {{"token", std::string(kMaxSecretBytes + 1, 'x')}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->Get(kNs, "token")->at("token"), "kept");
}

TEST_P(SecretStoreConformance, ListNamesTheNamespacesSecretsSortedAndDeleteRemoves) {
  EXPECT_THAT(*store_->List(kNs), ::testing::IsEmpty());
  for (const char* name : {"b", "a", "c"}) ASSERT_THAT(store_->Put(kNs, name, {{"k", name}}), IsOk());
  ASSERT_THAT(store_->Put("relay-conformance-other", "d", {{"k", "d"}}), IsOk());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("a", "b", "c"));
  ASSERT_THAT(store_->Delete(kNs, "b"), IsOk());
  EXPECT_THAT(*store_->List(kNs), ElementsAre("a", "c"));
  EXPECT_THAT(store_->Get(kNs, "b"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SecretStoreConformance, WatchReportsCreateReplaceAndDelete) {
  std::atomic<int> changes{0};
  auto watch = store_->Watch(kNs, "watched", [&] { changes++; });
  // A change made once the watch runs is reported; give it a moment to start.
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_THAT(store_->Put(kNs, "watched", {{"k", "1"}}), IsOk());
  EXPECT_TRUE(Eventually([&] { return changes >= 1; }));
  int seen = changes;
  ASSERT_THAT(store_->Put(kNs, "watched", {{"k", "2"}}), IsOk());
  EXPECT_TRUE(Eventually([&] { return changes > seen; }));
  seen = changes;
  ASSERT_THAT(store_->Put(kNs, "unwatched", {{"k", "2"}}), IsOk());
  ASSERT_THAT(store_->Delete(kNs, "watched"), IsOk());
  EXPECT_TRUE(Eventually([&] { return changes > seen; }));
}

// Writers replace one secret at once: every read is one writer's whole secret, never
// keys from two, and the last write is what stays.
TEST_P(SecretStoreConformance, ConcurrentWritersNeverMixAndTheLastOneStays) {
  constexpr int kWriters = 4;
  constexpr int kWrites = 25;
  std::atomic<bool> mixed{false};
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop) {
      absl::StatusOr<SecretData> read = store_->Get(kNs, "pair");
      if (read.ok() && read->at("tls.crt").substr(4) != read->at("tls.key").substr(3)) mixed = true;
    }
  });
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kWrites; ++i) {
        std::string version = absl::StrCat(w, "-", i);
        if (!store_->Put(kNs, "pair", {{"tls.crt", "crt-" + version}, {"tls.key", "key" + version}}).ok()) failures++;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  ASSERT_THAT(store_->Put(kNs, "pair", {{"tls.crt", "crt-last"}, {"tls.key", "keylast"}}), IsOk());
  stop = true;
  reader.join();
  EXPECT_EQ(failures, 0);
  EXPECT_FALSE(mixed);
  EXPECT_EQ(store_->Get(kNs, "pair")->at("tls.crt"), "crt-last");
}

}  // namespace relay::secrets
