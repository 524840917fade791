#ifndef RELAY_COMMON_RATE_LIMIT_H_
#define RELAY_COMMON_RATE_LIMIT_H_
// A token bucket: `rate` events a second on average, in bursts of up to `burst`. Time is
// passed in (tests move it). Not synchronised: one owner, or the owner's lock.
#include <algorithm>

#include "absl/time/time.h"

namespace relay {

class TokenBucket {
 public:
  TokenBucket(double rate_per_second, double burst, absl::Time now)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), refilled_(now) {}

  // Takes a token if one is there at `now`.
  bool TryTake(absl::Time now) {
    if (now > refilled_) {
      tokens_ = std::min(burst_, tokens_ + absl::ToDoubleSeconds(now - refilled_) * rate_);
      refilled_ = now;
    }
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  absl::Time refilled_;
};

}  // namespace relay

#endif  // RELAY_COMMON_RATE_LIMIT_H_
