#ifndef RELAY_SECRETS_MEMORY_STORE_H_
#define RELAY_SECRETS_MEMORY_STORE_H_

// A SecretStore in memory, for unit tests of the code that uses one (the services, the
// state seam's in-memory backend). Same contract as the directory store, including
// the checks on keys and sizes; nothing survives the object.

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "secrets/secret_store.h"

namespace relay::secrets {

class MemorySecretStore : public SecretStore {
 public:
  MemorySecretStore() = default;
  ~MemorySecretStore() override;

  absl::StatusOr<SecretData> Get(absl::string_view ns, absl::string_view name) override;
  absl::Status Put(absl::string_view ns, absl::string_view name, const SecretData& data) override;
  absl::Status Create(absl::string_view ns, absl::string_view name, const SecretData& data) override;
  absl::Status Delete(absl::string_view ns, absl::string_view name) override;
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override;
  // `on_change` runs on the writing thread, after the write (outside the store's lock).
  std::unique_ptr<SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                     std::function<void()> on_change) override;

 private:
  class MemoryWatch;
  using Key = std::pair<std::string, std::string>;
  absl::Status Write(absl::string_view ns, absl::string_view name, const SecretData* data, bool only_if_absent);

  absl::Mutex mu_;
  std::map<Key, SecretData> secrets_ ABSL_GUARDED_BY(mu_);
  std::multimap<Key, std::shared_ptr<std::function<void()>>> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::secrets

#endif  // RELAY_SECRETS_MEMORY_STORE_H_
