#ifndef RELAY_COMMON_BACKOFF_H_
#define RELAY_COMMON_BACKOFF_H_

// Capped exponential backoff with jitter, in one place for the agent's reconnects, the
// rotator's retries and the fleet benchmark (which must reconnect as agents do).

#include <algorithm>

#include "absl/time/time.h"

namespace relay {

// min(max, initial * 2^attempt), attempt counted from 0.
inline absl::Duration BackoffCeiling(int attempt, absl::Duration initial, absl::Duration max) {
  return std::min(initial * (int64_t{1} << std::clamp(attempt, 0, 30)), max);
}

// Full jitter: uniform in [0, ceiling), `uniform01` in [0, 1). Spreads a fleet that
// lost its server at one moment (reconnects).
inline absl::Duration FullJitterBackoff(int attempt, absl::Duration initial, absl::Duration max, double uniform01) {
  return BackoffCeiling(attempt, initial, max) * std::clamp(uniform01, 0.0, 1.0);
}

// Equal jitter: between half and all of the ceiling. Never retries too soon (the
// rotator's renewals).
inline absl::Duration EqualJitterBackoff(int attempt, absl::Duration initial, absl::Duration max, double uniform01) {
  absl::Duration ceiling = BackoffCeiling(attempt, initial, max);
  return ceiling / 2 + (ceiling / 2) * std::clamp(uniform01, 0.0, 1.0);
}

}  // namespace relay

#endif  // RELAY_COMMON_BACKOFF_H_
