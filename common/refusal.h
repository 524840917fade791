#ifndef RELAY_COMMON_REFUSAL_H_
#define RELAY_COMMON_REFUSAL_H_

// Why the server refused a caller, in a form the agent and the rotator act on: the
// status code alone (PERMISSION_DENIED) cannot tell "wait until an operator admits the
// cluster" from "this certificate is no longer accepted: register again". The server
// sends the kind as trailing metadata `relay-refusal`; inside each side it travels as a
// payload of absl::Status.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace relay {

inline constexpr char kRefusalMetadataKey[] = "relay-refusal";
// The cluster was deregistered: nothing this side can do until an operator admits it.
inline constexpr char kRefusalDeregistered[] = "deregistered";
// The certificate is not (or no longer) one the server accepts for the cluster (it was
// admitted again, or registered anew elsewhere): register again with the token.
inline constexpr char kRefusalUnknownCertificate[] = "unknown-certificate";

inline constexpr char kRefusalPayloadUrl[] = "type.relay.dev/refusal";

inline absl::Status WithRefusal(absl::Status status, absl::string_view kind) {
  status.SetPayload(kRefusalPayloadUrl, absl::Cord(kind));
  return status;
}

// The refusal kind carried by `status`, or "".
inline std::string RefusalOf(const absl::Status& status) {
  absl::optional<absl::Cord> kind = status.GetPayload(kRefusalPayloadUrl);
  return kind ? std::string(*kind) : std::string();
}

}  // namespace relay

#endif  // RELAY_COMMON_REFUSAL_H_
