#include "state/state_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "common/work_queue.h"
#include "secrets/memory_store.h"
#include "state/watch_list.h"

namespace relay::state {

absl::Status ValidateKey(absl::string_view key) {
  bool ok = !key.empty() && key.size() <= 256 && key[0] != '/';
  for (char c : key) ok = ok && c > ' ' && c < 0x7f;
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("state key \"", key.substr(0, 64),
                                                 "\" is not valid: printable ASCII without spaces, "
                                                 "at most 256 bytes, not starting with '/'"));
}

absl::Status ValidateWrite(absl::string_view key, const std::optional<std::string>& value) {
  if (absl::Status valid = ValidateKey(key); !valid.ok()) return valid;
  if (value && (value->size() > kMaxRecordBytes || value->find('\n') != std::string::npos)) {
    return absl::InvalidArgumentError(
        absl::StrCat("record ", key, " is longer than ", kMaxRecordBytes, " bytes or holds a newline"));
  }
  return absl::OkStatus();
}

absl::Status CheckCompareAndSet(absl::string_view key, const std::optional<std::string>& value,
                                int64_t current_revision, int64_t expected_revision) {
  if (absl::Status valid = ValidateWrite(key, value); !valid.ok()) return valid;
  if (!value && current_revision == 0) return absl::NotFoundError(absl::StrCat("no record ", key, " to delete"));
  if (expected_revision == 0 && current_revision != 0) {
    return absl::AlreadyExistsError(absl::StrCat("record ", key, " exists"));
  }
  if (current_revision != expected_revision) {
    return absl::AbortedError(absl::StrCat("record ", key, " changed (revision ", current_revision, ", expected ",
                                           expected_revision, "): read it again"));
  }
  return absl::OkStatus();
}

namespace {

class MemoryStateStore : public StateStore {
 public:
  explicit MemoryStateStore(std::unique_ptr<secrets::SecretStore> secrets) : secrets_(std::move(secrets)) {}

  absl::StatusOr<Record> Get(absl::string_view key) override {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(std::string(key));
    if (it == records_.end()) return absl::NotFoundError(absl::StrCat("no record ", key));
    return it->second;
  }

  absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) override {
    absl::MutexLock lock(&mu_);
    std::map<std::string, Record> found;
    for (auto it = records_.lower_bound(std::string(prefix)); it != records_.end() && absl::StartsWith(it->first, prefix);
         ++it) {
      found.insert(*it);
    }
    return found;
  }

  void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                     Done done) override {
    absl::MutexLock lock(&mu_);  // applied and posted together: callbacks in revision order
    absl::StatusOr<int64_t> outcome = ApplyAndNotifyLocked(key, value, expected_revision);
    callbacks_.Post([done = std::move(done), outcome = std::move(outcome)]() mutable {
      std::move(done)(std::move(outcome));
    });
  }

  absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                               int64_t expected_revision) override {
    absl::MutexLock lock(&mu_);
    return ApplyAndNotifyLocked(key, value, expected_revision);  // in memory: durable at once
  }

  std::unique_ptr<StateWatch> Watch(absl::string_view prefix, std::function<void(const Change&)> on_change) override {
    return watchers_.Add(prefix, std::move(on_change));
  }

  std::string Describe(absl::string_view key) override { return absl::StrCat("record ", key, " (in memory)"); }

  secrets::SecretStore& secrets() override { return *secrets_; }

 private:
  absl::StatusOr<int64_t> ApplyAndNotifyLocked(const std::string& key, const std::optional<std::string>& value,
                                               int64_t expected_revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<int64_t> outcome = ApplyLocked(key, value, expected_revision);
    if (outcome.ok()) {
      Change change{key, value, *outcome};
      callbacks_.Post([this, change = std::move(change)] { watchers_.Notify(change); });
    }
    return outcome;
  }

  absl::StatusOr<int64_t> ApplyLocked(const std::string& key, const std::optional<std::string>& value,
                                      int64_t expected_revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = records_.find(key);
    if (absl::Status allowed =
            CheckCompareAndSet(key, value, it == records_.end() ? 0 : it->second.revision, expected_revision);
        !allowed.ok()) {
      return allowed;
    }
    int64_t revision = ++revision_;
    if (value) {
      records_[key] = Record{*value, revision};
    } else {
      records_.erase(it);
    }
    return revision;
  }

  std::unique_ptr<secrets::SecretStore> secrets_;
  absl::Mutex mu_;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  WatchList watchers_;
  // One thread, so "done" callbacks run in order. Last: it stops (running what is
  // queued) before the rest goes.
  WorkQueue callbacks_{1};
};

}  // namespace

std::unique_ptr<StateStore> NewMemoryStateStore(std::unique_ptr<secrets::SecretStore> secrets) {
  if (!secrets) secrets = std::make_unique<secrets::MemorySecretStore>();
  return std::make_unique<MemoryStateStore>(std::move(secrets));
}

namespace {

// Sends each secret to the store that holds it (see WithSecretsIn).
class RoutedSecretStore final : public secrets::SecretStore {
 public:
  RoutedSecretStore(secrets::SecretStore* rest, std::unique_ptr<secrets::SecretStore> named, SecretNames names)
      : rest_(rest), named_(std::move(named)), names_(std::move(names)) {}

  absl::StatusOr<secrets::SecretData> Get(absl::string_view ns, absl::string_view name) override {
    return For(ns, name).Get(ns, name);
  }
  absl::Status Put(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return For(ns, name).Put(ns, name, data);
  }
  absl::Status Create(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return For(ns, name).Create(ns, name, data);
  }
  absl::Status Delete(absl::string_view ns, absl::string_view name) override { return For(ns, name).Delete(ns, name); }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override {
    ASSIGN_OR_RETURN(std::vector<std::string> names, rest_->List(ns));
    std::set<std::string> all;
    for (std::string& name : names) {
      if (!names_.count({std::string(ns), name})) all.insert(std::move(name));
    }
    for (const auto& [secret_ns, name] : names_) {
      if (secret_ns != ns) continue;
      absl::StatusOr<secrets::SecretData> found = named_->Get(secret_ns, name);
      if (found.ok()) {
        all.insert(name);
      } else if (!absl::IsNotFound(found.status())) {
        return found.status();
      }
    }
    return std::vector<std::string>(all.begin(), all.end());
  }
  std::unique_ptr<secrets::SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                              std::function<void()> on_change) override {
    return For(ns, name).Watch(ns, name, std::move(on_change));
  }

 private:
  secrets::SecretStore& For(absl::string_view ns, absl::string_view name) {
    return names_.count({std::string(ns), std::string(name)}) ? *named_ : *rest_;
  }

  secrets::SecretStore* rest_;
  std::unique_ptr<secrets::SecretStore> named_;
  const SecretNames names_;
};

class SecretsElsewhere final : public StateStore {
 public:
  SecretsElsewhere(std::unique_ptr<StateStore> records, std::unique_ptr<secrets::SecretStore> named_secrets,
                   SecretNames names)
      : records_(std::move(records)),
        secrets_(&records_->secrets(), std::move(named_secrets), std::move(names)) {}

  absl::StatusOr<Record> Get(absl::string_view key) override { return records_->Get(key); }
  absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) override {
    return records_->List(prefix);
  }
  void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                     Done done) override {
    records_->CompareAndSet(std::move(key), std::move(value), expected_revision, std::move(done));
  }
  absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                               int64_t expected_revision) override {
    return records_->CompareAndSetAndWait(std::move(key), std::move(value), expected_revision);
  }
  std::unique_ptr<StateWatch> Watch(absl::string_view prefix, std::function<void(const Change&)> on_change) override {
    return records_->Watch(prefix, std::move(on_change));
  }
  std::string Describe(absl::string_view key) override { return records_->Describe(key); }
  secrets::SecretStore& secrets() override { return secrets_; }
  absl::Status CompactHistory() override { return records_->CompactHistory(); }

 private:
  std::unique_ptr<StateStore> records_;
  RoutedSecretStore secrets_;
};

}  // namespace

std::unique_ptr<StateStore> WithSecretsIn(std::unique_ptr<StateStore> records,
                                          std::unique_ptr<secrets::SecretStore> named_secrets, SecretNames names) {
  return std::make_unique<SecretsElsewhere>(std::move(records), std::move(named_secrets), std::move(names));
}

}  // namespace relay::state
