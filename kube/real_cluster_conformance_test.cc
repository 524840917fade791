// The SecretStore conformance suite (secrets/conformance.h) against a real Kubernetes
// cluster, when RELAY_TEST_KUBECONFIG names a kubeconfig (bearer token or token file)
// whose user may get, list, watch, create, update and delete Secrets in the namespace
// relay-conformance, which must exist:
//
//   kubectl create namespace relay-conformance
//   RELAY_TEST_KUBECONFIG=$HOME/.kube/relay-test tools/bazel test //kube:real_cluster_conformance_test
//
// Every secret in that namespace is deleted before each test. Without the variable the
// test says RELAY_TEST_SKIPPED (which .ci/run counts as skipped, never as passed) — also
// under CI=true: no machine here can run a kube-apiserver, and a cluster is not a tool
// tools/bazel could install, so this stays an opt-in check against the real thing.
#include <cstdlib>
#include <iostream>

#include "gtest/gtest.h"
#include "kube/kubernetes_secret_store.h"
#include "secrets/conformance.h"

namespace relay::kube {
namespace {

using secrets::SecretStoreConformance;
using secrets::SecretStoreFactory;

std::unique_ptr<secrets::SecretStore> OpenOnRealCluster() {
  absl::StatusOr<KubernetesOptions> options = KubeconfigOptions(std::getenv("RELAY_TEST_KUBECONFIG"));
  if (!options.ok()) {
    ADD_FAILURE() << options.status().message();
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<secrets::SecretStore>> store = OpenKubernetesSecretStore(*options);
  if (!store.ok()) {
    ADD_FAILURE() << store.status().message();
    return nullptr;
  }
  // A fresh namespace per test, as the suite expects.
  absl::StatusOr<std::vector<std::string>> names = (*store)->List(secrets::kConformanceNamespace);
  if (!names.ok()) {
    ADD_FAILURE() << names.status().message() << " (does namespace " << secrets::kConformanceNamespace
                  << " exist? kubectl create namespace " << secrets::kConformanceNamespace << ")";
    return nullptr;
  }
  for (const std::string& name : *names) {
    if (absl::Status deleted = (*store)->Delete(secrets::kConformanceNamespace, name);
        !deleted.ok() && !absl::IsNotFound(deleted)) {
      ADD_FAILURE() << deleted.message();
      return nullptr;
    }
  }
  return *std::move(store);
}

INSTANTIATE_TEST_SUITE_P(RealCluster, SecretStoreConformance,
                         ::testing::Values(SecretStoreFactory{"real_cluster", OpenOnRealCluster}));

}  // namespace
}  // namespace relay::kube

int main(int argc, char** argv) {
  const char* kubeconfig = std::getenv("RELAY_TEST_KUBECONFIG");
  if (kubeconfig == nullptr || *kubeconfig == '\0') {
    std::cout << "RELAY_TEST_SKIPPED: RELAY_TEST_KUBECONFIG is not set; set it to a kubeconfig of a real cluster "
                 "to run the SecretStore conformance suite there\n";
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
