#include "secrets/secret_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/names.h"

namespace relay::secrets {

absl::Status ValidateSecretKey(absl::string_view key) {
  bool valid = !key.empty() && key.size() <= 253 && key != "." && key != ".." &&
               !absl::StartsWith(key, "..");
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    valid = valid && ok;
  }
  if (valid) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "secret key \"", key.substr(0, 64),
      "\" is not valid: use letters, digits, '-', '_' and '.', not starting with \"..\""));
}

absl::Status ValidateSecretNames(absl::string_view ns, absl::string_view name) {
  if (!IsDnsName(ns)) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace \"", ns.substr(0, 64), "\" is not a valid Kubernetes name"));
  }
  if (!IsDnsName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret name \"", name.substr(0, 64), "\" is not a valid Kubernetes name"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSecretData(const SecretData& data) {
  if (data.size() > kMaxSecretKeys) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret has ", data.size(), " keys, more than the limit of ", kMaxSecretKeys));
  }
  size_t total = 0;
  for (const auto& [key, value] : data) {
    if (absl::Status status = ValidateSecretKey(key); !status.ok()) return status;
    total += key.size() + value.size();
  }
  if (total > kMaxSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secret holds ", total, " bytes, more than the limit of ", kMaxSecretBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetKey(const SecretData& data, absl::string_view ns,
                                   absl::string_view name, absl::string_view key) {
  auto it = data.find(std::string(key));
  if (it != data.end()) return it->second;
  std::vector<std::string> keys;
  for (const auto& [k, v] : data) keys.push_back(k);
  return absl::NotFoundError(absl::StrCat(
      "secret ", ns, "/", name, " has no key \"", key, "\" (it has: ",
      keys.empty() ? "no keys" : absl::StrJoin(keys, ", "),
      "): add the key or point the configuration at the right one"));
}

}  // namespace relay::secrets
