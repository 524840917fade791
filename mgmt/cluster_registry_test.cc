#include "mgmt/cluster_registry.h"

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/refusal.h"
#include "state/journal.h"
#include "state/local_state_store.h"

namespace relay::mgmt {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::ReadFileBytes;
using ::relay::testing::StatusIs;
using ::relay::testing::WriteFileBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1767225600);


// A registry together with the store it runs on (the store goes after it).
using Registry = std::unique_ptr<ClusterRegistry, std::function<void(ClusterRegistry*)>>;

class ClusterRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = relay::testing::MakeTestDir("registry");
    journal_ = state::LocalStateStore::JournalPath(dir_, "gloo-mesh");
  }

  absl::StatusOr<Registry> TryLoad() {
    state::LocalStateOptions options;
    options.dir = dir_;
    options.repair_command = "relayctl registry repair --mgmt_secrets_dir=/x";
    absl::StatusOr<std::unique_ptr<state::LocalStateStore>> store = state::LocalStateStore::Open(options);
    if (!store.ok()) return store.status();
    std::shared_ptr<state::StateStore> shared(std::move(*store));
    absl::StatusOr<std::unique_ptr<ClusterRegistry>> registry = ClusterRegistry::Load(shared.get(), "gloo-mesh");
    if (!registry.ok()) return registry.status();
    return Registry(registry->release(), [shared](ClusterRegistry* r) { delete r; });
  }
  Registry Load() {
    absl::StatusOr<Registry> registry = TryLoad();
    EXPECT_THAT(registry, IsOk());
    return registry.ok() ? *std::move(registry) : nullptr;
  }

  size_t JournalLines() {
    std::ifstream in(journal_);
    std::string line;
    size_t count = 0;
    while (std::getline(in, line)) count++;
    return count;
  }

  std::string dir_;
  std::string journal_;
};

TEST_F(ClusterRegistryTest, IssuedSerialsArePinnedAndOlderOnesRetireWhenANewerIsUsed) {
  auto registry = Load();
  ASSERT_THAT(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow), IsOk());
  ASSERT_THAT(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow), IsOk());
  ASSERT_THAT(registry->RecordIssued("east", "C", kNow + absl::Hours(3), kNow), IsOk());
  EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), IsOk());  // current
  EXPECT_THAT(registry->CheckIssuedSerial("east", "C"), IsOk());  // pending: becomes current
  EXPECT_THAT(registry->CheckIssuedSerial("east", "B"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(registry->CheckIssuedSerial("east", "Z"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(registry->CheckIssuedSerial("west", "A"), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(ClusterRegistryTest, StateSurvivesAReload) {
  {
    auto registry = Load();
    ASSERT_THAT(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow), IsOk());
    ASSERT_THAT(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow), IsOk());
    ASSERT_THAT(registry->RecordIssued("west", "W", kNow + absl::Hours(1), kNow), IsOk());
    ASSERT_THAT(registry->Deregister("west"), IsOk());
    // Issuance times keep their milliseconds (a root rotation's switch gate needs them).
    ASSERT_THAT(registry->RecordIssued("north", "N", kNow + absl::Hours(1), kNow + absl::Milliseconds(194)), IsOk());
    ASSERT_EQ(*registry->PushSnapshot("east", {{"a.yaml", "x"}}), 1);
    ASSERT_THAT(registry->RecordAck("east", 1), IsOk());
  }
  auto registry = Load();
  std::optional<ClusterRecord> east = registry->Find("east");
  ASSERT_TRUE(east);
  EXPECT_EQ(east->current_serial, "A");
  EXPECT_THAT(east->pending_serials, ElementsAre("B"));
  EXPECT_EQ(east->not_after, kNow + absl::Hours(2));
  EXPECT_EQ(east->snapshot_version, 1);
  EXPECT_EQ(east->acked_version, 1);
  EXPECT_EQ(east->issued_at, kNow);
  EXPECT_EQ(registry->Find("north")->issued_at, kNow + absl::Milliseconds(194));
  EXPECT_THAT(registry->CheckNotDeregistered("west"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(registry->LatestSnapshot("east")->at(0).content, "x");
  // Loading compacts: the header and one line per cluster.
  EXPECT_EQ(JournalLines(), 4u);
}

TEST_F(ClusterRegistryTest, ConcurrentUpdatesAllReachTheDisk) {
  {
    auto registry = Load();
    // The threads count what failed; this thread asserts.
    absl::Mutex mu;
    std::vector<absl::Status> failures;
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 100; ++i) {
          absl::Status status = registry->RecordIssued(absl::StrCat("c", t, "-", i), absl::StrCat("S", i),
                                                       kNow + absl::Hours(1), kNow);
          if (!status.ok()) {
            absl::MutexLock lock(&mu);
            failures.push_back(status);
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(failures.empty()) << failures.size() << " failed, the first: " << failures[0];
  }
  auto registry = Load();
  EXPECT_EQ(registry->List().size(), 800u);
  EXPECT_EQ(registry->Find("c7-99")->current_serial, "S99");
}

TEST_F(ClusterRegistryTest, AsyncRecordsCallBackOnceDurableAndInOrder) {
  {
    auto registry = Load();
    // The callbacks record; this thread asserts.
    absl::Mutex mu;
    std::vector<int> completed;
    std::vector<absl::Status> failures;
    int callbacks = 0;
    for (int i = 0; i < 300; ++i) {
      registry->RecordIssuedAsync("west", absl::StrCat("S", i), kNow + absl::Hours(1), kNow,
                                  [&, i](absl::Status status) {
                                    absl::MutexLock lock(&mu);
                                    if (!status.ok()) failures.push_back(status);
                                    completed.push_back(i);
                                    callbacks++;
                                  });
    }
    {
      absl::MutexLock lock(&mu);
      ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(+[](int* n) { return *n == 300; }, &callbacks),
                                      absl::Seconds(30)))
          << callbacks << " of 300 callbacks";
      EXPECT_TRUE(failures.empty()) << failures.size() << " failed, the first: " << failures[0];
      for (int i = 0; i < 300; ++i) EXPECT_EQ(completed[i], i);
    }
    // Each was visible once it was durable, which is when its callback ran.
    EXPECT_THAT(registry->Find("west")->pending_serials, ElementsAre("S296", "S297", "S298", "S299"));
  }
  auto registry = Load();
  EXPECT_EQ(registry->Find("west")->current_serial, "S0");
  EXPECT_THAT(registry->Find("west")->pending_serials, ElementsAre("S296", "S297", "S298", "S299"));

  // A refused change calls back at once, and writes nothing.
  ASSERT_THAT(registry->Deregister("west"), IsOk());
  size_t lines = JournalLines();
  absl::Status refused;
  registry->RecordIssuedAsync("west", "T", kNow + absl::Hours(1), kNow,
                              [&](absl::Status status) { refused = std::move(status); });
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(JournalLines(), lines);
}

TEST_F(ClusterRegistryTest, ALineCutShortByACrashIsIgnored) {
  {
    auto registry = Load();
    ASSERT_THAT(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow), IsOk());
  }
  std::ofstream(journal_, std::ios::app) << "0badf00d put\tclusters/east\tstate=deregistered;current_ser";
  auto registry = Load();
  EXPECT_THAT(registry->CheckNotDeregistered("east"), IsOk());
  EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), IsOk());
}

// Without checksums (the older format) a record is still read strictly: an unknown
// field or an unreadable value is damage, not a default.
TEST_F(ClusterRegistryTest, OlderJournalsAreReadStrictlyAndRewrittenWithChecksums) {
  WriteFileBytes(journal_, "east\tstate=registered;current_serial=A;pending_serials=;not_after=1767229200;"
                     "issued_at=1767225600;registered_at=1767225600;snapshot_version=0;acked_version=0\n");
  {
    auto registry = Load();
    EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), IsOk());
  }
  EXPECT_THAT(ReadFileBytes(journal_), ::testing::StartsWith(state::kJournalHeader));
  WriteFileBytes(journal_, "east\tstate=registered;current_serial=A;pending_serials=;not_after=17x;"
                     "issued_at=1767225600;registered_at=1767225600;snapshot_version=0;acked_version=0\n");
  absl::StatusOr<Registry> damaged = TryLoad();
  ASSERT_FALSE(damaged.ok());
  EXPECT_THAT(damaged, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(damaged.status().message(), HasSubstr("not_after is not a number"));
  EXPECT_THAT(damaged.status().message(), HasSubstr("byte 0, line 1"));
  EXPECT_THAT(damaged.status().message(), HasSubstr(journal_));
}

// DESIGN.md "Who may register a name".
TEST_F(ClusterRegistryTest, TheSharedTokenCannotTakeOverALiveClusterName) {
  auto registry = Load();
  RegistrationRules offline;
  ASSERT_THAT(registry->RecordRegistered("east", "A", kNow + absl::Hours(1), kNow, offline), IsOk());

  RegistrationRules online;
  online.live_stream = true;
  absl::StatusOr<RegistrationKind> refused = registry->CheckRegistration("east", kNow, online);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(refused.status().message(), HasSubstr("relayctl register --cluster east"));
  EXPECT_THAT(refused.status().message(), HasSubstr("bootstrap_token_ttl"));
  EXPECT_THAT(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, online), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), IsOk());  // nothing changed

  // Offline (a pod that lost its key): allowed, and the old certificate is revoked.
  EXPECT_EQ(*registry->CheckRegistration("east", kNow, offline), RegistrationKind::kReplacesValid);
  ASSERT_THAT(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, offline), IsOk());
  EXPECT_THAT(registry->CheckIssuedSerial("east", "A"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(registry->CheckIssuedSerial("east", "B"), IsOk());

  // Strict: refused whenever a valid certificate exists...
  RegistrationRules strict;
  strict.strict = true;
  EXPECT_THAT(registry->CheckRegistration("east", kNow, strict), StatusIs(absl::StatusCode::kAlreadyExists));
  // ...but not once it expired, nor after an operator's admit, nor with a bound token.
  EXPECT_EQ(*registry->CheckRegistration("east", kNow + absl::Hours(2), strict), RegistrationKind::kFirst);
  RegistrationRules bound = strict;
  bound.bound_token = true;
  bound.live_stream = true;
  EXPECT_THAT(registry->CheckRegistration("east", kNow, bound), IsOk());
  ASSERT_THAT(registry->Admit("east"), IsOk());
  online.strict = true;
  ASSERT_THAT(registry->RecordRegistered("east", "C", kNow + absl::Hours(1), kNow, online), IsOk());
  // The admit was used up.
  EXPECT_THAT(registry->CheckRegistration("east", kNow, online), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(ClusterRegistryTest, RefusalsSayWhetherToWaitOrToRegisterAgain) {
  auto registry = Load();
  ASSERT_THAT(registry->RecordRegistered("east", "A", kNow + absl::Hours(1), kNow, {}), IsOk());
  ASSERT_THAT(registry->Deregister("east"), IsOk());
  absl::Status deregistered = registry->CheckNotDeregistered("east");
  EXPECT_EQ(RefusalOf(deregistered), kRefusalDeregistered);
  ASSERT_THAT(registry->Admit("east"), IsOk());
  absl::Status unknown = registry->CheckIssuedSerial("east", "A");
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(RefusalOf(unknown), kRefusalUnknownCertificate);
  // Registering again works at once: the admitted name holds no valid certificate.
  RegistrationRules online;
  online.live_stream = true;
  online.strict = true;
  EXPECT_THAT(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, online), IsOk());
}

// A lowered clientCertTtl: the latest certificate's expiry is what the registry shows.
TEST_F(ClusterRegistryTest, ExpiryIsTheLatestCertificatesEvenWhenEarlier) {
  auto registry = Load();
  ASSERT_THAT(registry->RecordRegistered("east", "A", kNow + absl::Hours(720), kNow, {}), IsOk());
  ASSERT_THAT(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow + absl::Hours(1)), IsOk());
  EXPECT_EQ(registry->Find("east")->not_after, kNow + absl::Hours(2));
}

TEST_F(ClusterRegistryTest, AnAckForAVersionNeverPushedIsRefused) {
  auto registry = Load();
  ASSERT_THAT(registry->PushSnapshot("east", {{"a.yaml", "x"}}), IsOk());
  EXPECT_THAT(registry->RecordAck("east", 7), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(registry->Find("east")->acked_version, 0);
  EXPECT_THAT(registry->RecordAck("east", 1), IsOk());
  EXPECT_EQ(registry->Find("east")->acked_version, 1);
}

// Two registries on one store stand for two replicas: each hears what the other wrote,
// and never its own writes (whatever order its watch and its acknowledgements come in).
TEST(ClusterRegistryReplicasTest, ForeignChangesAreReportedAndOwnWritesAreNot) {
  std::unique_ptr<state::StateStore> store = state::NewMemoryStateStore();
  absl::StatusOr<std::unique_ptr<ClusterRegistry>> a = ClusterRegistry::Load(store.get(), "gloo-mesh");
  absl::StatusOr<std::unique_ptr<ClusterRegistry>> b = ClusterRegistry::Load(store.get(), "gloo-mesh");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  absl::Mutex mu;
  std::vector<std::string> heard_by_a, heard_by_b;
  (*a)->SetForeignChangeListener([&](const ClusterRecord&, const ClusterRecord& after) {
    absl::MutexLock lock(&mu);
    heard_by_a.push_back(after.name);
  });
  (*b)->SetForeignChangeListener([&](const ClusterRecord& before, const ClusterRecord& after) {
    absl::MutexLock lock(&mu);
    if (after.deregistered && !before.deregistered) heard_by_b.push_back(after.name);
  });
  constexpr int kClusters = 50;
  for (int i = 0; i < kClusters; ++i) {
    std::string cluster = absl::StrCat("c", i);
    ASSERT_THAT((*a)->RecordRegistered(cluster, absl::StrCat("AA", i), kNow + absl::Hours(1), kNow, {}), IsOk());
    ASSERT_THAT((*a)->PushSnapshot(cluster, {{"a.txt", "A"}}), IsOk());
    ASSERT_THAT((*a)->Deregister(cluster), IsOk());
  }
  {
    absl::MutexLock lock(&mu);
    auto all_heard = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return heard_by_b.size() == kClusters; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_heard), absl::Seconds(30)));
  }
  (*a)->SetForeignChangeListener(nullptr);
  (*b)->SetForeignChangeListener(nullptr);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(heard_by_a, ElementsAre());
}

}  // namespace
}  // namespace relay::mgmt
