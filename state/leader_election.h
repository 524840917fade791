#ifndef RELAY_STATE_LEADER_ELECTION_H_
#define RELAY_STATE_LEADER_ELECTION_H_

// Work that must run once among replicas sharing a store (renewing the shared server
// certificate, clearing dead replicas' records, later CA rotation) runs on one elected
// leader. One record, `leaders/<name>` = the holder's id: the holder rewrites it every
// `retry_period` (compare-and-set on the revision it read, so two candidates never both
// win); another candidate takes it over only once it has seen the same revision for
// `lease_duration` on its own clock. No replica compares its clock with another's, so
// skew between machines does not matter, only their rates: the scheme of client-go's
// leaderelection package (Kubernetes controllers; leaseDuration, renewDeadline,
// retryPeriod). The holder stops calling itself leader when it has not renewed for
// `renew_deadline` (< lease_duration), before anyone may take over.
//
// On the state seam, so every backend has it: on a local store the one server always
// wins. A leader that stops cleanly deletes the record, and another takes over at its
// next try instead of after the lease.

#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "state/state_store.h"

namespace relay::state {

class LeaderElection {
 public:
  static constexpr char kLeaders[] = "leaders/";

  struct Options {
    absl::Duration lease_duration = absl::Seconds(15);
    absl::Duration renew_deadline = absl::Seconds(10);
    absl::Duration retry_period = absl::Seconds(2);
    Clock* clock = &Clock::Real();
  };

  // Campaigns for `name` as `candidate` (unique among the replicas) until destroyed.
  LeaderElection(StateStore* store, std::string name, std::string candidate, Options options);
  LeaderElection(StateStore* store, std::string name, std::string candidate)
      : LeaderElection(store, std::move(name), std::move(candidate), Options()) {}
  ~LeaderElection();

  // True while this candidate holds the record and renewed it within renew_deadline.
  bool IsLeader() const;
  // The holder as last seen ("" when none or unknown).
  std::string Leader() const;

  // One round at once (tests; the loop runs them every retry_period).
  void TryAcquireOrRenew();

 private:
  void Loop();

  StateStore* const store_;
  const std::string key_;
  const std::string candidate_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::string holder_ ABSL_GUARDED_BY(mu_);
  int64_t observed_revision_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time observed_at_ ABSL_GUARDED_BY(mu_);
  absl::Time renewed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool said_leading_ ABSL_GUARDED_BY(mu_) = false;  // what the log last said

  absl::Mutex round_mu_;  // one round at a time
  Wakeup wakeup_;
  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread loop_;
};

}  // namespace relay::state

#endif  // RELAY_STATE_LEADER_ELECTION_H_
