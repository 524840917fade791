#include "mgmt/cluster_registry.h"

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/refusal.h"
#include "state/journal.h"
#include "state/local_state_store.h"

namespace relay::mgmt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1767225600);

// The file as bytes, to damage it the way a disk or a person would.
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteAll(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

// A registry together with the store it runs on (the store goes after it).
using Registry = std::unique_ptr<ClusterRegistry, std::function<void(ClusterRegistry*)>>;

class ClusterRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(std::getenv("TEST_TMPDIR"), "/registry.XXXXXX");
    dir_ = mkdtemp(tmpl.data());
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
    EXPECT_TRUE(registry.ok()) << registry.status();
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
  // Loading compacts: the header and one line per cluster.
  EXPECT_EQ(JournalLines(), 3u);
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
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(+[](int* n) { return *n == 300; }, &callbacks));
      for (int i = 0; i < 300; ++i) EXPECT_EQ(completed[i], i);
    }
    // Each was visible once it was durable, which is when its callback ran.
    EXPECT_THAT(registry->Find("west")->pending_serials, ElementsAre("S296", "S297", "S298", "S299"));
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

TEST_F(ClusterRegistryTest, ALineCutShortByACrashIsIgnored) {
  {
    auto registry = Load();
    ASSERT_TRUE(registry->RecordIssued("east", "A", kNow + absl::Hours(1), kNow).ok());
  }
  std::ofstream(journal_, std::ios::app) << "0badf00d put\tclusters/east\tstate=deregistered;current_ser";
  auto registry = Load();
  EXPECT_TRUE(registry->CheckNotDeregistered("east").ok());
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "A").ok());
}

// Without checksums (the older format) a record is still read strictly: an unknown
// field or an unreadable value is damage, not a default.
TEST_F(ClusterRegistryTest, OlderJournalsAreReadStrictlyAndRewrittenWithChecksums) {
  WriteAll(journal_, "east\tstate=registered;current_serial=A;pending_serials=;not_after=1767229200;"
                     "issued_at=1767225600;registered_at=1767225600;snapshot_version=0;acked_version=0\n");
  {
    auto registry = Load();
    EXPECT_TRUE(registry->CheckIssuedSerial("east", "A").ok());
  }
  EXPECT_THAT(ReadAll(journal_), ::testing::StartsWith(state::kJournalHeader));
  WriteAll(journal_, "east\tstate=registered;current_serial=A;pending_serials=;not_after=17x;"
                     "issued_at=1767225600;registered_at=1767225600;snapshot_version=0;acked_version=0\n");
  absl::StatusOr<Registry> damaged = TryLoad();
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(damaged.status().message(), HasSubstr("not_after is not a number"));
  EXPECT_THAT(damaged.status().message(), HasSubstr("byte 0, line 1"));
  EXPECT_THAT(damaged.status().message(), HasSubstr(journal_));
}

// DESIGN.md "Who may register a name".
TEST_F(ClusterRegistryTest, TheSharedTokenCannotTakeOverALiveClusterName) {
  auto registry = Load();
  RegistrationRules offline;
  ASSERT_TRUE(registry->RecordRegistered("east", "A", kNow + absl::Hours(1), kNow, offline).ok());

  RegistrationRules online;
  online.live_stream = true;
  absl::StatusOr<RegistrationKind> refused = registry->CheckRegistration("east", kNow, online);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.status().message(), HasSubstr("relayctl register --cluster east"));
  EXPECT_THAT(refused.status().message(), HasSubstr("bootstrap_token_ttl"));
  EXPECT_EQ(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, online).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "A").ok());  // nothing changed

  // Offline (a pod that lost its key): allowed, and the old certificate is revoked.
  EXPECT_EQ(*registry->CheckRegistration("east", kNow, offline), RegistrationKind::kReplacesValid);
  ASSERT_TRUE(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, offline).ok());
  EXPECT_EQ(registry->CheckIssuedSerial("east", "A").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(registry->CheckIssuedSerial("east", "B").ok());

  // Strict: refused whenever a valid certificate exists...
  RegistrationRules strict;
  strict.strict = true;
  EXPECT_EQ(registry->CheckRegistration("east", kNow, strict).status().code(), absl::StatusCode::kAlreadyExists);
  // ...but not once it expired, nor after an operator's admit, nor with a bound token.
  EXPECT_EQ(*registry->CheckRegistration("east", kNow + absl::Hours(2), strict), RegistrationKind::kFirst);
  RegistrationRules bound = strict;
  bound.bound_token = true;
  bound.live_stream = true;
  EXPECT_TRUE(registry->CheckRegistration("east", kNow, bound).ok());
  ASSERT_TRUE(registry->Admit("east").ok());
  online.strict = true;
  ASSERT_TRUE(registry->RecordRegistered("east", "C", kNow + absl::Hours(1), kNow, online).ok());
  // The admit was used up.
  EXPECT_EQ(registry->CheckRegistration("east", kNow, online).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ClusterRegistryTest, RefusalsSayWhetherToWaitOrToRegisterAgain) {
  auto registry = Load();
  ASSERT_TRUE(registry->RecordRegistered("east", "A", kNow + absl::Hours(1), kNow, {}).ok());
  ASSERT_TRUE(registry->Deregister("east").ok());
  absl::Status deregistered = registry->CheckNotDeregistered("east");
  EXPECT_EQ(RefusalOf(deregistered), kRefusalDeregistered);
  ASSERT_TRUE(registry->Admit("east").ok());
  absl::Status unknown = registry->CheckIssuedSerial("east", "A");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(RefusalOf(unknown), kRefusalUnknownCertificate);
  // Registering again works at once: the admitted name holds no valid certificate.
  RegistrationRules online;
  online.live_stream = true;
  online.strict = true;
  EXPECT_TRUE(registry->RecordRegistered("east", "B", kNow + absl::Hours(1), kNow, online).ok());
}

// A lowered clientCertTtl: the latest certificate's expiry is what the registry shows.
TEST_F(ClusterRegistryTest, ExpiryIsTheLatestCertificatesEvenWhenEarlier) {
  auto registry = Load();
  ASSERT_TRUE(registry->RecordRegistered("east", "A", kNow + absl::Hours(720), kNow, {}).ok());
  ASSERT_TRUE(registry->RecordIssued("east", "B", kNow + absl::Hours(2), kNow + absl::Hours(1)).ok());
  EXPECT_EQ(registry->Find("east")->not_after, kNow + absl::Hours(2));
}

TEST_F(ClusterRegistryTest, AnAckForAVersionNeverPushedIsRefused) {
  auto registry = Load();
  ASSERT_TRUE(registry->PushSnapshot("east", {{"a.yaml", "x"}}).ok());
  EXPECT_EQ(registry->RecordAck("east", 7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry->Find("east")->acked_version, 0);
  EXPECT_TRUE(registry->RecordAck("east", 1).ok());
  EXPECT_EQ(registry->Find("east")->acked_version, 1);
}

}  // namespace
}  // namespace relay::mgmt
