#ifndef RELAY_MGMT_SOURCE_RATE_LIMITER_H_
#define RELAY_MGMT_SOURCE_RATE_LIMITER_H_

// Limits an event per source address (here: Register calls), each source with a token
// bucket of its own, so one holder of the shared token cannot create cluster names
// without limit while other sources go on unhindered.

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rate_limit.h"

namespace relay::mgmt {

class SourceRateLimiter {
 public:
  // `per_second` events a second per source on average, in bursts of `burst`;
  // `per_second` <= 0: no limit.
  SourceRateLimiter(double per_second, double burst) : per_second_(per_second), burst_(burst) {}

  struct Decision {
    bool allowed = true;
    // The first refusal since this source was last allowed: what to log once.
    bool newly_limited = false;
  };
  Decision Take(absl::string_view source, absl::Time now);

  // The address of gRPC's peer string, without the port ("ipv4:10.0.0.7:5123" ->
  // "10.0.0.7", "ipv6:[::1]:80" -> "::1"); other peers as they are.
  static std::string SourceOf(absl::string_view peer);

  size_t TrackedForTesting() const;

 private:
  struct Entry {
    TokenBucket bucket;
    bool limited = false;
    absl::Time last;
  };
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double per_second_;
  const double burst_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_SOURCE_RATE_LIMITER_H_
