#include "common/names.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace relay {
namespace {

bool IsLabelChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

}  // namespace

bool IsDnsLabel(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!IsLabelChar(c)) return false;
  }
  return true;
}

bool IsDnsName(absl::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (!IsDnsLabel(label)) return false;
  }
  return true;
}

absl::Status ValidateClusterName(absl::string_view name, absl::string_view what) {
  if (IsDnsLabel(name)) return absl::OkStatus();
  // The name is not secret; quoting it tells the operator which value to fix.
  return absl::InvalidArgumentError(absl::StrCat(
      what, " \"", name.substr(0, 80),
      "\" is not a DNS label: use 1-63 lowercase letters, digits or '-', starting and "
      "ending with a letter or digit (for example \"cluster-1\")"));
}

}  // namespace relay
