#ifndef RELAY_SECRETS_SECRET_STORE_H_
#define RELAY_SECRETS_SECRET_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace relay::secrets {

// A Kubernetes-shaped secret: key -> bytes.
using SecretData = std::map<std::string, std::string>;

// Kubernetes' own limits: a secret holds at most 1 MiB; we also bound the key count.
inline constexpr size_t kMaxSecretBytes = 1024 * 1024;
inline constexpr size_t kMaxSecretKeys = 64;

// Stops the watch when destroyed.
class SecretWatch {
 public:
  virtual ~SecretWatch() = default;
};

// (namespace, name) -> SecretData. Implementations are safe to use from many threads.
class SecretStore {
 public:
  virtual ~SecretStore() = default;

  // NOT_FOUND when the secret does not exist. A secret is always read whole, from one
  // version: never a certificate from one write with a key from another.
  virtual absl::StatusOr<SecretData> Get(absl::string_view ns, absl::string_view name) = 0;

  // Replaces the whole secret atomically. Keys must look like Kubernetes secret keys.
  virtual absl::Status Put(absl::string_view ns, absl::string_view name,
                           const SecretData& data) = 0;

  // Writes the secret only when it does not exist yet: ALREADY_EXISTS otherwise, and
  // nothing is written (the create-if-absent of CA bootstrap, when several servers may
  // start at once).
  virtual absl::Status Create(absl::string_view ns, absl::string_view name,
                              const SecretData& data) = 0;

  // NOT_FOUND when there is nothing to delete.
  virtual absl::Status Delete(absl::string_view ns, absl::string_view name) = 0;

  // Names of the secrets in `ns`, sorted. Empty when the namespace does not exist.
  virtual absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) = 0;

  // Calls `on_change` (from a background thread) after the secret is created, replaced
  // or deleted, until the returned watch is destroyed.
  virtual std::unique_ptr<SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                             std::function<void()> on_change) = 0;
};

// OK when `key` is a valid Kubernetes secret key ([-._a-zA-Z0-9]+, not "." or "..").
absl::Status ValidateSecretKey(absl::string_view key);

// OK when both are Kubernetes names (DNS labels); INVALID_ARGUMENT saying which is not.
absl::Status ValidateSecretNames(absl::string_view ns, absl::string_view name);

// Checks keys and sizes of a whole secret before anything is written.
absl::Status ValidateSecretData(const SecretData& data);

// Value of `key` in a secret, or NOT_FOUND naming the secret, the key and what keys
// it does have (never their values).
absl::StatusOr<std::string> GetKey(const SecretData& data, absl::string_view ns,
                                   absl::string_view name, absl::string_view key);

}  // namespace relay::secrets

#endif  // RELAY_SECRETS_SECRET_STORE_H_
