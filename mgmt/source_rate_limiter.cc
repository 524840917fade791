#include "mgmt/source_rate_limiter.h"

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace relay::mgmt {
namespace {

// Sources tracked before idle ones are dropped (a dropped source starts with a full
// bucket, which is what it would have by then anyway).
constexpr size_t kPruneAbove = 10000;

}  // namespace

SourceRateLimiter::Decision SourceRateLimiter::Take(absl::string_view source, absl::Time now) {
  if (per_second_ <= 0) return {};
  absl::MutexLock lock(&mu_);
  if (entries_.size() >= kPruneAbove) PruneLocked(now);
  auto [it, inserted] = entries_.try_emplace(std::string(source), Entry{TokenBucket(per_second_, burst_, now)});
  Entry& entry = it->second;
  entry.last = now;
  Decision decision;
  decision.allowed = entry.bucket.TryTake(now);
  decision.newly_limited = !decision.allowed && !entry.limited;
  entry.limited = !decision.allowed;
  return decision;
}

void SourceRateLimiter::PruneLocked(absl::Time now) {
  // A source idle long enough to have refilled its bucket is as good as new.
  const absl::Duration refill = absl::Seconds(burst_ / per_second_);
  absl::erase_if(entries_, [&](const auto& entry) { return now - entry.second.last >= refill; });
}

std::string SourceRateLimiter::SourceOf(absl::string_view peer) {
  absl::string_view address = peer;
  if (absl::ConsumePrefix(&address, "ipv4:")) {
    return std::string(address.substr(0, address.rfind(':')));
  }
  if (absl::ConsumePrefix(&address, "ipv6:[")) {
    return std::string(address.substr(0, address.find(']')));
  }
  return std::string(peer);
}

size_t SourceRateLimiter::TrackedForTesting() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace relay::mgmt
