#include "state/leader_election.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace relay::state {

LeaderElection::LeaderElection(StateStore* store, std::string name, std::string candidate, Options options)
    : store_(store),
      key_(absl::StrCat(kLeaders, name)),
      candidate_(std::move(candidate)),
      options_(options) {
  loop_ = std::thread([this] { Loop(); });
}

LeaderElection::~LeaderElection() {
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  wakeup_.Notify();
  loop_.join();
  absl::MutexLock round(&round_mu_);
  int64_t revision = 0;
  {
    absl::MutexLock lock(&mu_);
    if (holder_ != candidate_) return;
    revision = observed_revision_;
  }
  // Hand over at once; if someone took over meanwhile, the revision no longer matches.
  absl::StatusOr<int64_t> released = store_->CompareAndSetAndWait(key_, std::nullopt, revision);
  if (released.ok()) LogInfo("leadership_released", {{"election", key_}, {"candidate", candidate_}});
}

void LeaderElection::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stopping_) return;
    }
    TryAcquireOrRenew();
    options_.clock->SleepUntil(options_.clock->Now() + options_.retry_period, wakeup_);
  }
}

bool LeaderElection::IsLeader() const {
  absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  return holder_ == candidate_ && now - renewed_at_ < options_.renew_deadline;
}

std::string LeaderElection::Leader() const {
  absl::MutexLock lock(&mu_);
  return holder_;
}

void LeaderElection::TryAcquireOrRenew() {
  absl::MutexLock round(&round_mu_);
  const absl::Time now = options_.clock->Now();
  absl::StatusOr<Record> current = store_->Get(key_);
  std::optional<int64_t> expected_revision;  // write against it; none: leave the record be
  if (absl::IsNotFound(current.status())) {
    expected_revision = 0;
  } else if (current.ok()) {
    absl::MutexLock lock(&mu_);
    if (current->revision != observed_revision_) {
      observed_revision_ = current->revision;
      observed_at_ = now;
      holder_ = current->value;
    }
    if (current->value == candidate_ || now - observed_at_ >= options_.lease_duration) {
      expected_revision = current->revision;
    }
  }
  absl::StatusOr<int64_t> written = absl::UnknownError("not written");
  if (expected_revision) written = store_->CompareAndSetAndWait(key_, candidate_, *expected_revision);

  absl::MutexLock lock(&mu_);
  if (written.ok()) {
    holder_ = candidate_;
    observed_revision_ = *written;
    observed_at_ = now;
    renewed_at_ = now;
  } else if (absl::IsAborted(written.status()) || absl::IsAlreadyExists(written.status()) ||
             absl::IsNotFound(written.status())) {
    // Another candidate wrote first: look again next round. (Unreachable store: the
    // holder keeps the record, and renew_deadline decides whether it still leads.)
    holder_ = "";
    observed_revision_ = 0;
  }
  const bool leading = holder_ == candidate_ && now - renewed_at_ < options_.renew_deadline;
  if (leading == said_leading_) return;
  said_leading_ = leading;
  if (leading) {
    LogInfo("leadership_acquired", {{"election", key_}, {"candidate", candidate_}});
    return;
  }
  std::string why = !current.ok() && !absl::IsNotFound(current.status()) ? std::string(current.status().message())
                    : !written.ok()                                   ? std::string(written.status().message())
                                                                      : "";
  LogWarning("leadership_lost", {{"election", key_}, {"candidate", candidate_}, {"held_by", holder_}, {"error", why}});
}

}  // namespace relay::state
