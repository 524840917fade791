#include "kube/secret_backend.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kube/kubernetes_secret_store.h"
#include "secrets/directory_store.h"

namespace relay::kube {

bool AbslParseFlag(absl::string_view text, SecretBackend* backend, std::string* error) {
  if (text == "directory") {
    *backend = SecretBackend::kDirectory;
  } else if (text == "kubernetes") {
    *backend = SecretBackend::kKubernetes;
  } else {
    *error = "use directory (files in --secrets_dir) or kubernetes (Secrets through the Kubernetes API)";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(SecretBackend backend) {
  return backend == SecretBackend::kKubernetes ? "kubernetes" : "directory";
}

absl::Status CheckSecretFlags(SecretBackend backend, const std::string& kubeconfig) {
  if (!kubeconfig.empty() && backend != SecretBackend::kKubernetes) {
    return absl::InvalidArgumentError(
        "--kubeconfig is used only with --secrets=kubernetes: add it, or drop --kubeconfig");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<secrets::SecretStore>> OpenSecretStore(SecretBackend backend,
                                                                      const std::string& dir,
                                                                      const std::string& kubeconfig) {
  if (backend == SecretBackend::kDirectory) {
    ASSIGN_OR_RETURN(std::unique_ptr<secrets::DirectorySecretStore> store,
                     secrets::DirectorySecretStore::Create(dir));
    return std::unique_ptr<secrets::SecretStore>(std::move(store));
  }
  ASSIGN_OR_RETURN(KubernetesOptions options, kubeconfig.empty() ? InClusterOptions() : KubeconfigOptions(kubeconfig));
  return OpenKubernetesSecretStore(std::move(options));
}

std::string NamespaceFor(const std::string& flag_value, bool flag_given, SecretBackend backend,
                         const std::string& kubeconfig) {
  if (flag_given || backend == SecretBackend::kDirectory) return flag_value;
  std::string configured;
  if (kubeconfig.empty()) {
    std::ifstream file(std::string(kServiceAccountDir) + "/namespace");
    std::getline(file, configured);
  } else if (!KubeconfigOptions(kubeconfig, &configured).ok()) {
    configured.clear();  // opening the store reports what is wrong with the file
  }
  configured = std::string(absl::StripAsciiWhitespace(configured));
  return configured.empty() ? flag_value : configured;
}

std::string DescribeSecretBackend(SecretBackend backend, const std::string& dir, const std::string& kubeconfig) {
  if (backend == SecretBackend::kDirectory) return absl::StrCat("directory ", dir);
  return kubeconfig.empty() ? "kubernetes (in-cluster)" : absl::StrCat("kubernetes (kubeconfig ", kubeconfig, ")");
}

}  // namespace relay::kube
