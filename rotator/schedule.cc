#include "rotator/schedule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"

namespace relay::rotator {

absl::Duration RetryDelay(int failures, const RetryPolicy& policy, double jitter01) {
  if (failures <= 0) return absl::ZeroDuration();
  return EqualJitterBackoff(failures - 1, policy.initial, policy.max, jitter01);
}

namespace {

// No usable certificate (`what` says why): Register with the token when the retry
// schedule allows, or stuck without one.
Decision RegisterAgain(const std::string& what, const RotationState& state, absl::Time now, absl::Time retry_at,
                       const RetryPolicy& policy) {
  if (!state.token_available) {
    return {Action::kStuck, retry_at == now ? now + policy.max : retry_at,
            absl::StrCat(what, " and there is no identity token to register again: run relayctl "
                               "register --cluster <name> for this cluster")};
  }
  return {retry_at <= now ? Action::kRegister : Action::kWait, retry_at,
          absl::StrCat(what, ": registering again with the identity token")};
}

}  // namespace

Decision Decide(const RotationState& state, absl::Time now, double ratio,
                const pki::JitterSource& jitter, const RetryPolicy& policy, double retry_jitter01) {
  absl::Time retry_at = now;
  if (state.consecutive_failures > 0) {
    absl::Duration delay = RetryDelay(state.consecutive_failures, policy, retry_jitter01);
    if (state.last_failure_refused) delay = policy.max;
    retry_at = std::max(now, state.last_failure + delay);
  }

  if (!state.store_problem.empty()) {
    // Nothing is known until the store answers: no renewal, no registration, just a
    // retry on the failure schedule.
    std::string why = absl::StrCat("the secret store cannot be read (", state.store_problem, "): trying again");
    if (retry_at > now) return {Action::kWait, retry_at, why};
    return {Action::kStoreUnavailable, now, why};
  }
  if (!state.have_certificate) {
    if (state.certificate_problem.empty() && !state.force) {
      // First contact is the agent's (it registers before it connects); a rotator that
      // registered too would only race it. The client secret is watched: its arrival
      // wakes the loop.
      return {Action::kWait, absl::InfiniteFuture(), "waiting for the agent's first registration"};
    }
    // An unusable secret is never "no certificate yet": nobody else would replace it.
    return RegisterAgain(state.certificate_problem.empty()
                             ? std::string("there is no client certificate and a renewal was forced")
                             : absl::StrCat("the client secret is unusable (", state.certificate_problem, ")"),
                         state, now, retry_at, policy);
  }
  if (now >= state.certificate.not_after) {
    return RegisterAgain(absl::StrCat("client certificate expired at ", pki::FormatUtc(state.certificate.not_after)),
                         state, now, retry_at, policy);
  }

  if (state.force && state.consecutive_failures == 0) return {Action::kRenew, now, "renewal forced"};

  absl::StatusOr<absl::Time> renew_at = pki::RenewAt(state.certificate, ratio, jitter);
  absl::Time due = renew_at.ok() ? *renew_at : now;
  const bool requested = state.renew_requested_at < due;
  due = std::min(due, state.renew_requested_at);
  absl::Time at = std::max(due, retry_at);
  // A retry never waits past expiry: at expiry the Register fallback takes over.
  if (state.consecutive_failures > 0) at = std::min(at, state.certificate.not_after);
  if (at <= now) {
    return {Action::kRenew, now,
            state.consecutive_failures > 0
                ? absl::StrCat("retrying after ", state.consecutive_failures, " failed renewal(s)")
                : (requested ? "the server asked for a renewal (root rotation)" : "rotation point reached")};
  }
  return {Action::kWait, at,
          state.consecutive_failures > 0 ? "waiting to retry"
                                         : (requested ? "waiting for the renewal the server asked for"
                                                      : "waiting for the rotation point")};
}

std::string HealthProblem(const RotationState& state, absl::Time now, double ratio,
                          const pki::JitterSource& jitter) {
  if (!state.have_certificate) {
    if (state.certificate_problem.empty()) return "";  // the agent has not registered yet
    return absl::StrCat("the client secret is unusable (", state.certificate_problem, ")",
                        state.token_available ? "; registering again with the identity token"
                                              : "; no identity token: run relayctl register");
  }
  if (now >= state.certificate.not_after) {
    return absl::StrCat("client certificate expired at ", pki::FormatUtc(state.certificate.not_after),
                        state.token_available ? "" : "; no identity token: run relayctl register");
  }
  absl::StatusOr<absl::Time> due = pki::RenewAt(state.certificate, ratio, jitter);
  if (due.ok() && now >= *due && state.consecutive_failures > 0) {
    return absl::StrCat("client certificate is past its rotation point (", pki::FormatUtc(*due),
                        ") and the last ", state.consecutive_failures, " renewal(s) failed");
  }
  return "";
}

}  // namespace relay::rotator
