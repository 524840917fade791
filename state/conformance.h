#ifndef RELAY_STATE_CONFORMANCE_H_
#define RELAY_STATE_CONFORMANCE_H_

// The contract of the state seam (state_store.h), as tests every backend runs
// unchanged. A backend's test instantiates them with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(Local, StateStoreConformance,
//                            ::testing::Values(StateStoreFactory{"local", true, OpenLocal}));

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "gtest/gtest.h"
#include "state/state_store.h"

namespace relay::state {

struct StateStoreFactory {
  std::string name;
  // Whether what was written survives Open on the same directory again.
  bool persistent = true;
  // Opens the backend on `dir` (a fresh directory per test; the same one to reopen).
  std::function<std::unique_ptr<StateStore>(const std::string& dir)> open;
};

inline std::ostream& operator<<(std::ostream& out, const StateStoreFactory& factory) {
  return out << factory.name;
}

class StateStoreConformance : public ::testing::TestWithParam<StateStoreFactory> {
 protected:
  void SetUp() override;
  void Reopen();

  std::string dir_;
  std::unique_ptr<StateStore> store_;
};

}  // namespace relay::state

#endif  // RELAY_STATE_CONFORMANCE_H_
