// The state seam's contract (conformance.h), run against the backends that live here:
// local (the embedded default) and memory (for unit tests of the services).
#include "state/conformance.h"
#include "common/status_matchers.h"
#include "secrets/memory_store.h"
#include "state/local_state_store.h"
#include "state/state_store.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;

std::unique_ptr<StateStore> OpenLocal(const std::string& dir) {
  LocalStateOptions options;
  options.dir = dir + "/local";
  absl::StatusOr<std::unique_ptr<LocalStateStore>> store = LocalStateStore::Open(options);
  EXPECT_THAT(store, IsOk());
  if (!store.ok()) return nullptr;
  return *std::move(store);
}

std::unique_ptr<StateStore> OpenMemory(const std::string&) { return NewMemoryStateStore(); }

// The server's set-up with --secrets=kubernetes: records local, the relay secrets
// elsewhere (here in memory; on the Kubernetes API in the server).
std::unique_ptr<StateStore> OpenLocalWithRootElsewhere(const std::string& dir) {
  std::unique_ptr<StateStore> local = OpenLocal(dir);
  if (!local) return nullptr;
  return WithSecretsIn(std::move(local), std::make_unique<secrets::MemorySecretStore>(), {{"gloo-mesh", "relay-root-tls-secret"}});
}

// Named secrets go to their store and nowhere else; the others stay with the records;
// List answers from both.
TEST(WithSecretsInTest, SendsEachSecretToItsStore) {
  auto named = std::make_unique<secrets::MemorySecretStore>();
  secrets::SecretStore* named_view = named.get();
  std::unique_ptr<StateStore> store =
      WithSecretsIn(NewMemoryStateStore(), std::move(named), {{"gloo-mesh", "relay-root-tls-secret"}});
  secrets::SecretStore& routed = store->secrets();
  ASSERT_THAT(routed.Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "root"}}), IsOk());
  ASSERT_THAT(routed.Put("gloo-mesh", "relay-snapshot-east", {{"snapshot", "s"}}), IsOk());
  ASSERT_THAT(routed.Put("other", "relay-root-tls-secret", {{"ca.crt", "not routed"}}), IsOk());
  EXPECT_EQ(named_view->Get("gloo-mesh", "relay-root-tls-secret")->at("ca.crt"), "root");
  EXPECT_TRUE(absl::IsNotFound(named_view->Get("gloo-mesh", "relay-snapshot-east").status()));
  EXPECT_TRUE(absl::IsNotFound(named_view->Get("other", "relay-root-tls-secret").status()));
  EXPECT_EQ(routed.Get("other", "relay-root-tls-secret")->at("ca.crt"), "not routed");
  EXPECT_EQ(*routed.List("gloo-mesh"), (std::vector<std::string>{"relay-root-tls-secret", "relay-snapshot-east"}));
  ASSERT_THAT(routed.Delete("gloo-mesh", "relay-root-tls-secret"), IsOk());
  EXPECT_EQ(*routed.List("gloo-mesh"), (std::vector<std::string>{"relay-snapshot-east"}));
}

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreConformance,
                         ::testing::Values(StateStoreFactory{"local", true, OpenLocal},
                                           StateStoreFactory{"memory", false, OpenMemory},
                                           StateStoreFactory{"local_with_named_secrets_elsewhere", false,
                                                             OpenLocalWithRootElsewhere}),
                         [](const ::testing::TestParamInfo<StateStoreFactory>& info) { return info.param.name; });

}  // namespace
}  // namespace relay::state
