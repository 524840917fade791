#include "secrets/memory_store.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace relay::secrets {

class MemorySecretStore::MemoryWatch : public SecretWatch {
 public:
  MemoryWatch(MemorySecretStore* store, Key key, std::shared_ptr<std::function<void()>> callback)
      : store_(store), key_(std::move(key)), callback_(std::move(callback)) {}
  ~MemoryWatch() override {
    absl::MutexLock lock(&store_->mu_);
    auto [begin, end] = store_->watchers_.equal_range(key_);
    for (auto it = begin; it != end; ++it) {
      if (it->second == callback_) {
        store_->watchers_.erase(it);
        break;
      }
    }
  }

 private:
  MemorySecretStore* const store_;
  const Key key_;
  const std::shared_ptr<std::function<void()>> callback_;
};

MemorySecretStore::~MemorySecretStore() = default;

absl::StatusOr<SecretData> MemorySecretStore::Get(absl::string_view ns, absl::string_view name) {
  RETURN_IF_ERROR(ValidateSecretNames(ns, name));
  absl::MutexLock lock(&mu_);
  auto it = secrets_.find(Key(ns, name));
  if (it == secrets_.end()) return absl::NotFoundError(absl::StrCat("secret ", ns, "/", name, " does not exist"));
  return it->second;
}

absl::Status MemorySecretStore::Write(absl::string_view ns, absl::string_view name, const SecretData* data,
                                      bool only_if_absent) {
  RETURN_IF_ERROR(ValidateSecretNames(ns, name));
  if (data != nullptr) RETURN_IF_ERROR(ValidateSecretData(*data));
  std::vector<std::shared_ptr<std::function<void()>>> to_call;
  {
    absl::MutexLock lock(&mu_);
    Key key(ns, name);
    auto it = secrets_.find(key);
    if (data == nullptr) {
      if (it == secrets_.end()) return absl::NotFoundError(absl::StrCat("secret ", ns, "/", name, " does not exist"));
      secrets_.erase(it);
    } else {
      if (only_if_absent && it != secrets_.end()) {
        return absl::AlreadyExistsError(absl::StrCat("secret ", ns, "/", name, " already exists"));
      }
      secrets_[key] = *data;
    }
    auto [begin, end] = watchers_.equal_range(key);
    for (auto watcher = begin; watcher != end; ++watcher) to_call.push_back(watcher->second);
  }
  for (const auto& callback : to_call) (*callback)();
  return absl::OkStatus();
}

absl::Status MemorySecretStore::Put(absl::string_view ns, absl::string_view name, const SecretData& data) {
  return Write(ns, name, &data, false);
}

absl::Status MemorySecretStore::Create(absl::string_view ns, absl::string_view name, const SecretData& data) {
  return Write(ns, name, &data, true);
}

absl::Status MemorySecretStore::Delete(absl::string_view ns, absl::string_view name) {
  return Write(ns, name, nullptr, false);
}

absl::StatusOr<std::vector<std::string>> MemorySecretStore::List(absl::string_view ns) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [key, data] : secrets_) {
    if (key.first == ns) names.push_back(key.second);
  }
  return names;
}

std::unique_ptr<SecretWatch> MemorySecretStore::Watch(absl::string_view ns, absl::string_view name,
                                                      std::function<void()> on_change) {
  auto callback = std::make_shared<std::function<void()>>(std::move(on_change));
  Key key(ns, name);
  absl::MutexLock lock(&mu_);
  watchers_.emplace(key, callback);
  return std::make_unique<MemoryWatch>(this, key, callback);
}

}  // namespace relay::secrets
