#ifndef RELAY_SECRETS_CONFORMANCE_H_
#define RELAY_SECRETS_CONFORMANCE_H_

// The SecretStore contract (secret_store.h) as tests every backend runs unchanged: the
// directory, the Kubernetes API (against the test apiserver, and against a real cluster
// when RELAY_TEST_KUBECONFIG is set). A backend's test instantiates them:
//
//   INSTANTIATE_TEST_SUITE_P(Directory, SecretStoreConformance,
//                            ::testing::Values(SecretStoreFactory{"directory", OpenDirectory}));

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "gtest/gtest.h"
#include "secrets/secret_store.h"

namespace relay::secrets {

// The namespace the suite writes in (a real cluster needs it to exist).
inline constexpr char kConformanceNamespace[] = "relay-conformance";

struct SecretStoreFactory {
  std::string name;
  // A store with nothing in the namespace the tests use (a fresh one per test).
  std::function<std::unique_ptr<SecretStore>()> open;
};

inline std::ostream& operator<<(std::ostream& out, const SecretStoreFactory& factory) {
  return out << factory.name;
}

class SecretStoreConformance : public ::testing::TestWithParam<SecretStoreFactory> {
 protected:
  void SetUp() override;

  std::unique_ptr<SecretStore> store_;
};

}  // namespace relay::secrets

#endif  // RELAY_SECRETS_CONFORMANCE_H_
