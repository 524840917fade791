// The state seam's contract (conformance.h) on etcd: a real etcd (Debian's etcd-server)
// started for this test binary, each test under a key prefix of its own.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "state/conformance.h"
#include "state/etcd_state_store.h"
#include "state/etcd_testing.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;

// One etcd for the whole binary: starting one takes about a second.
testing::EtcdUnderTest* SharedEtcd() {
  static testing::EtcdUnderTest* etcd = [] {
    absl::StatusOr<std::unique_ptr<testing::EtcdUnderTest>> started = testing::EtcdUnderTest::Start();
    EXPECT_THAT(started, IsOk());
    return started.ok() ? started->release() : nullptr;
  }();
  return etcd;
}

// The same directory gives the same prefix: reopening sees what was written.
std::unique_ptr<StateStore> OpenEtcdWith(const std::string& dir, std::optional<SecretCipher> cipher) {
  testing::EtcdUnderTest* etcd = SharedEtcd();
  if (etcd == nullptr) return nullptr;
  EtcdOptions options;
  options.endpoints = {etcd->endpoint()};
  options.prefix = absl::StrCat("/relay-test/", std::filesystem::path(dir).filename().string(), "/");
  options.cipher = std::move(cipher);
  absl::StatusOr<std::unique_ptr<StateStore>> store = OpenEtcdStateStore(options);
  EXPECT_THAT(store, IsOk());
  return store.ok() ? *std::move(store) : nullptr;
}

std::unique_ptr<StateStore> OpenEtcd(const std::string& dir) { return OpenEtcdWith(dir, std::nullopt); }

// Secrets sealed at rest keep the same contract.
std::unique_ptr<StateStore> OpenEncryptedEtcd(const std::string& dir) {
  return OpenEtcdWith(dir, *SecretCipher::FromKey(std::string(32, 'k')));
}

INSTANTIATE_TEST_SUITE_P(Etcd, StateStoreConformance,
                         ::testing::Values(StateStoreFactory{"etcd", true, OpenEtcd},
                                           StateStoreFactory{"etcd_encrypted", true, OpenEncryptedEtcd}),
                         [](const ::testing::TestParamInfo<StateStoreFactory>& info) { return info.param.name; });

// Stops the shared etcd when the tests are done (a leaked etcd would outlive the test).
class StopEtcd : public ::testing::Environment {
 public:
  void TearDown() override { delete SharedEtcd(); }
};
const auto* const kStopEtcd = ::testing::AddGlobalTestEnvironment(new StopEtcd);

}  // namespace
}  // namespace relay::state
