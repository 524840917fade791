#ifndef RELAY_KUBE_KUBERNETES_SECRET_STORE_H_
#define RELAY_KUBE_KUBERNETES_SECRET_STORE_H_

// The SecretStore on the Kubernetes API (core/v1 Secrets), as the mesh keeps every relay
// secret: over HTTPS with a bearer token (cpp-httplib, JSON through nlohmann-json).
//
// - Get reads one Secret whole (one resourceVersion: a certificate and its key always
//   come from the same write).
// - Put replaces it: read, then update with the resourceVersion read (optimistic
//   concurrency); a 409 Conflict reads again and retries with backoff; an absent secret
//   is created, and a create that meets AlreadyExists goes round again.
// - Create is a POST: 409 AlreadyExists is ALREADY_EXISTS, nothing written.
// - Type: `kubernetes.io/tls` when the keys fit it (tls.crt and tls.key, with at most
//   ca.crt besides), else `Opaque`; an existing secret keeps its type (Kubernetes
//   refuses to change it).
// - Watch lists the one secret (fieldSelector metadata.name=NAME) and watches from the
//   list's resourceVersion with bookmarks, resuming from the last version seen; a 410
//   Gone, as the HTTP status or as an ERROR event, relists once and goes on.
// - The token file is read again when a minute has passed (projected service-account
//   tokens expire) and after a 401.
// Secret data never reaches a log or an error: errors carry the API's Status message,
// which names objects, not their contents.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "secrets/secret_store.h"

namespace relay::kube {

struct KubernetesOptions {
  // https://host:port (or http:// for a local test apiserver).
  std::string server;
  // File holding the bearer token (a service account's, or a kubeconfig user's); or,
  // when empty, the token itself (a kubeconfig's inline `token`).
  std::string token_file;
  std::string token;
  // CA bundle that signed the apiserver's certificate (https): a file, or the PEM itself.
  std::string ca_file;
  std::string ca_pem;
  // Per request; a watch's read waits longer (bookmarks arrive about every minute).
  absl::Duration timeout = absl::Seconds(10);
  // Attempts of a Put that keeps meeting 409 Conflict, before it gives up ABORTED.
  int conflict_attempts = 20;
};

// In-cluster: KUBERNETES_SERVICE_HOST / _PORT and the pod's service account
// (/var/run/secrets/kubernetes.io/serviceaccount: token, ca.crt). FAILED_PRECONDITION
// saying what is missing when not in a pod.
inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";
absl::StatusOr<KubernetesOptions> InClusterOptions(const std::string& service_account_dir = kServiceAccountDir);

// From a kubeconfig file: its current context's cluster (server, and
// certificate-authority or certificate-authority-data) and user (token or tokenFile). Paths are relative to the file. Other kinds
// of user credentials (client certificates, exec and auth-provider plugins) are
// refused with a message saying so. The context's namespace, if any, in `*ns`.
absl::StatusOr<KubernetesOptions> KubeconfigOptions(const std::string& path, std::string* ns = nullptr);

absl::StatusOr<std::unique_ptr<secrets::SecretStore>> OpenKubernetesSecretStore(KubernetesOptions options);

}  // namespace relay::kube

#endif  // RELAY_KUBE_KUBERNETES_SECRET_STORE_H_
