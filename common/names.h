#ifndef RELAY_COMMON_NAMES_H_
#define RELAY_COMMON_NAMES_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace relay {

// True for an RFC 1123 label as Kubernetes uses it for names: 1-63 characters of
// lowercase letters, digits and '-', starting and ending with a letter or digit.
bool IsDnsLabel(absl::string_view name);

// True for a DNS name made of such labels separated by dots, at most 253 characters.
bool IsDnsName(absl::string_view name);

// OK when `name` is a DNS label; otherwise INVALID_ARGUMENT naming `what` and the rule.
absl::Status ValidateClusterName(absl::string_view name, absl::string_view what = "cluster name");

}  // namespace relay

#endif  // RELAY_COMMON_NAMES_H_
