#include "mgmt/secret_mirror.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace relay::mgmt {

absl::StatusOr<std::unique_ptr<SecretMirror>> SecretMirror::Start(secrets::SecretStore& source,
                                                                  secrets::SecretStore& target,
                                                                  std::vector<Copied> secrets) {
  std::unique_ptr<SecretMirror> mirror(new SecretMirror(source, target));
  SecretMirror* self = mirror.get();
  for (const Copied& secret : secrets) {
    // Watch first: a change between the copy and the watch is not missed.
    mirror->watches_.push_back(source.Watch(secret.ns, secret.name, [self, secret] {
      if (absl::Status copied = self->Copy(secret); !copied.ok()) {
        LogError("secret_mirror_failed", {{"secret", absl::StrCat(secret.ns, "/", secret.name)},
                                          {"error", std::string(copied.message())}});
      }
    }));
    RETURN_IF_ERROR(mirror->Copy(secret));
  }
  return mirror;
}

SecretMirror::~SecretMirror() {
  watches_.clear();
  absl::MutexLock lock(&mu_);  // a copy under way finishes first
}

absl::Status SecretMirror::Copy(const Copied& secret) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<secrets::SecretData> data = source_.Get(secret.ns, secret.name);
  if (absl::IsNotFound(data.status())) return absl::OkStatus();  // deleted: the copy stays until replaced
  RETURN_IF_ERROR(data.status());
  if (!secret.keys.empty()) {
    secrets::SecretData wanted;
    for (const std::string& key : secret.keys) {
      if (auto it = data->find(key); it != data->end()) wanted.insert(*it);
    }
    *data = std::move(wanted);
  }
  absl::StatusOr<secrets::SecretData> copy = target_.Get(secret.ns, secret.name);
  if (copy.ok() && *copy == *data) return absl::OkStatus();
  RETURN_IF_ERROR(target_.Put(secret.ns, secret.name, *data));
  LogInfo("secret_mirrored", {{"secret", absl::StrCat(secret.ns, "/", secret.name)}});
  return absl::OkStatus();
}

}  // namespace relay::mgmt
