// The state seam's contract (conformance.h), run against the backends that live here:
// local (the embedded default) and memory (for unit tests of the services).
#include "state/conformance.h"
#include "common/status_matchers.h"
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

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreConformance,
                         ::testing::Values(StateStoreFactory{"local", true, OpenLocal},
                                           StateStoreFactory{"memory", false, OpenMemory}),
                         [](const ::testing::TestParamInfo<StateStoreFactory>& info) { return info.param.name; });

}  // namespace
}  // namespace relay::state
