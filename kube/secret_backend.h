#ifndef RELAY_KUBE_SECRET_BACKEND_H_
#define RELAY_KUBE_SECRET_BACKEND_H_
// Where a binary keeps its secrets, as its --secrets and --kubeconfig flags say: the
// directory store (kubelet's secret-volume layout; the embedded default) or Kubernetes
// Secrets through the API (in-cluster from the pod's service account, or a kubeconfig).
// One chooser for the server, the agent, the rotator and relayctl, so the flags mean
// the same everywhere.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "secrets/secret_store.h"

namespace relay::kube {

enum class SecretBackend {
  kDirectory,   // a directory on this machine (--secrets_dir)
  kKubernetes,  // Secrets in the cluster's API
};

// As a flag: --secrets=directory|kubernetes.
bool AbslParseFlag(absl::string_view text, SecretBackend* backend, std::string* error);
std::string AbslUnparseFlag(SecretBackend backend);

// The help text of --secrets and --kubeconfig, shared by every binary.
inline constexpr char kSecretsFlagHelp[] =
    "Where the secrets live: directory (files in --secrets_dir, kubelet's secret-volume layout) or "
    "kubernetes (Secrets in the cluster's API: in a pod through its service account, else through "
    "--kubeconfig).";
inline constexpr char kKubeconfigFlagHelp[] =
    "With --secrets=kubernetes: kubeconfig file whose current context (server, CA, bearer token) "
    "reaches the API. Empty: the pod's service account (in-cluster).";

// INVALID_ARGUMENT when the flags do not go together (--kubeconfig without
// --secrets=kubernetes), saying how to fix them.
absl::Status CheckSecretFlags(SecretBackend backend, const std::string& kubeconfig);

// Opens the store `backend` names: the directory `dir`, or the Kubernetes API through
// `kubeconfig` (in-cluster when empty). The error says which configuration is missing.
absl::StatusOr<std::unique_ptr<secrets::SecretStore>> OpenSecretStore(SecretBackend backend,
                                                                      const std::string& dir,
                                                                      const std::string& kubeconfig);

// The namespace the secrets live in: `flag_value` when the flag was given on the
// command line or the secrets are in a directory; else, as kubectl does, the pod's own
// namespace (in-cluster: the service account's namespace file) or the kubeconfig
// context's, when there is one; else `flag_value` (its default).
std::string NamespaceFor(const std::string& flag_value, bool flag_given, SecretBackend backend,
                         const std::string& kubeconfig);

// For logs: "directory DIR", "kubernetes (kubeconfig FILE)" or "kubernetes (in-cluster)".
std::string DescribeSecretBackend(SecretBackend backend, const std::string& dir, const std::string& kubeconfig);

}  // namespace relay::kube

#endif  // RELAY_KUBE_SECRET_BACKEND_H_
