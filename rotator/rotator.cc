#include "rotator/rotator.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/refusal.h"

namespace relay::rotator {
namespace {

std::string Reason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable: return "unavailable";
    case absl::StatusCode::kDeadlineExceeded: return "timeout";
    case absl::StatusCode::kPermissionDenied: return "refused";
    case absl::StatusCode::kUnauthenticated: return "unauthenticated";
    case absl::StatusCode::kInvalidArgument: return "invalid";
    default: return "other";
  }
}

std::string When(const Decision& decision) {
  return decision.at == absl::InfiniteFuture() ? decision.why : pki::FormatUtc(decision.at);
}

double Uniform01() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0, 1)(rng);
}

}  // namespace

Rotator::RotatorMetrics::RotatorMetrics(Metrics& registry)
    : certificate_expiry(registry.AddGauge("relay_client_certificate_expiry_timestamp_seconds",
                                           "notAfter of the client certificate in use.")),
      next_renewal(registry.AddGauge("relay_rotator_next_renewal_timestamp_seconds",
                                     "When the rotator will next renew (or retry).")),
      renewals(registry.AddCounter("relay_rotator_renewals_total", "Successful renewals, by how (renew, register).",
                                   {"how"})),
      errors(registry.AddCounter("relay_rotator_renewal_errors_total", "Failed renewals, by reason.", {"reason"})) {
  renewals.Touch({"renew"});
  renewals.Touch({"register"});
}

Rotator::Rotator(RotatorOptions options, secrets::SecretStore* store, Metrics* metrics)
    : options_(std::move(options)), store_(store), metrics_(*metrics), clock_(*options_.clock) {
  force_ = options_.force;
}

Rotator::~Rotator() { Stop(); }

RotationState Rotator::ReadState() {
  RotationState state;
  enrolment::ClientSecretState secret = enrolment::InspectClientSecret(*store_, options_.secrets, options_.cluster);
  if (secret.kind == enrolment::ClientSecretState::kUsable) {
    state.have_certificate = true;
    state.certificate = secret.leaf;
    state.renew_requested_at = enrolment::RequestedRenewal(*store_, options_.secrets, secret.leaf.serial_hex);
    // Only a certificate the agent can use: an unusable secret's would mislead.
    metrics_.certificate_expiry.Set(absl::ToUnixSeconds(secret.leaf.not_after));
  } else if (secret.kind == enrolment::ClientSecretState::kUnusable) {
    state.certificate_problem = secret.problem;
  } else if (secret.kind == enrolment::ClientSecretState::kUnreadable) {
    state.store_problem = secret.problem;
  }
  state.token_available = enrolment::HasToken(*store_, options_.secrets);
  absl::MutexLock lock(&mu_);
  state.consecutive_failures = failures_;
  state.last_failure = last_failure_;
  state.last_failure_refused = last_refused_;
  state.force = force_;
  return state;
}

void Rotator::RecordFailure(const absl::Status& status) {
  std::string reason = Reason(status);
  metrics_.errors.Increment({reason});
  absl::MutexLock lock(&mu_);
  failures_++;
  last_failure_ = clock_.Now();
  last_refused_ = status.code() == absl::StatusCode::kPermissionDenied;
  retry_jitter_ = Uniform01();
  LogWarning("renewal_failed", {{"cluster", options_.cluster},
                                {"reason", reason},
                                {"failures", absl::StrCat(failures_)},
                                {"error", std::string(status.message())}});
}

absl::Status Rotator::Act(Action action) {
  absl::Time now = clock_.Now();
  absl::StatusOr<enrolment::ClientCredentials> fresh;
  const char* how = "renew";
  if (action == Action::kRenew) {
    absl::StatusOr<enrolment::ClientCredentials> current =
        enrolment::LoadClientCredentials(*store_, options_.secrets, options_.cluster, now);
    if (!current.ok()) {
      fresh = current.status();
    } else {
      fresh = enrolment::Renew(*current, options_.server, now);
    }
    bool forced;
    {
      absl::MutexLock lock(&mu_);
      forced = force_;
    }
    // A forced renewal whose certificate the server no longer accepts (the cluster was
    // admitted again, or registered anew): register, as --force promises to renew
    // whatever the state. Unforced, that is the agent's to do when its stream is refused.
    if (forced && !fresh.ok() && RefusalOf(fresh.status()) == kRefusalUnknownCertificate &&
        enrolment::HasToken(*store_, options_.secrets)) {
      LogWarning("renewal_refused_registering", {{"cluster", options_.cluster},
                                                 {"error", std::string(fresh.status().message())}});
      action = Action::kRegister;
    }
  }
  if (action == Action::kRegister) {
    how = "register";
    fresh = enrolment::RegisterWithToken(*store_, options_.secrets, options_.cluster, options_.server, now);
  }
  absl::Status status = fresh.status();
  if (status.ok()) status = enrolment::WriteClientCredentials(*store_, options_.secrets, *fresh);
  if (!status.ok()) {
    RecordFailure(status);
    return status;
  }
  metrics_.renewals.Increment({how});
  metrics_.certificate_expiry.Set(absl::ToUnixSeconds(fresh->leaf.not_after));
  LogInfo("certificate_rotated", {{"cluster", options_.cluster},
                                  {"how", how},
                                  {"serial", fresh->leaf.serial_hex},
                                  {"not_after", pki::FormatUtc(fresh->leaf.not_after)}});
  absl::MutexLock lock(&mu_);
  failures_ = 0;
  last_refused_ = false;
  force_ = false;
  stuck_reason_.clear();
  return absl::OkStatus();
}

Decision Rotator::DecideNow() {
  RotationState state = ReadState();
  double retry_jitter;
  {
    absl::MutexLock lock(&mu_);
    retry_jitter = retry_jitter_;
  }
  return Decide(state, clock_.Now(), options_.grace_period_ratio, pki::SerialJitter, options_.retry, retry_jitter);
}

absl::Status Rotator::RunOnce() {
  Decision decision = DecideNow();
  switch (decision.action) {
    case Action::kWait:
      LogInfo("renewal_not_due", {{"cluster", options_.cluster}, {"due", When(decision)}});
      return absl::OkStatus();
    case Action::kStuck:
      return absl::FailedPreconditionError(decision.why);
    case Action::kStoreUnavailable:
      return absl::UnavailableError(decision.why);
    case Action::kRenew:
    case Action::kRegister:
      return Act(decision.action);
  }
  return absl::OkStatus();
}

void Rotator::Start() {
  const enrolment::WorkloadSecrets& secrets = options_.secrets;
  watches_.push_back(store_->Watch(secrets.ns, secrets.values.client_tls_secret, [this] {
    {
      absl::MutexLock lock(&mu_);
      changed_ = true;
    }
    wakeup_.Notify();
  }));
  // A token or root that appears or changes can end a stuck state (relayctl register).
  // So does the agent's state, where a renewal the server asked for lands.
  for (auto [ns, name] : {std::pair(secrets.TokenNamespace(), secrets.values.token_secret.name),
                          std::pair(secrets.ns, secrets.values.root_tls_secret),
                          std::pair(secrets.ns, std::string(enrolment::kAgentStateSecret))}) {
    watches_.push_back(store_->Watch(ns, name, [this] { wakeup_.Notify(); }));
  }
  thread_ = std::thread([this] { Loop(); });
}

void Rotator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
  watches_.clear();
}

bool Rotator::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Rotator::Loop() {
  while (!Stopping()) {
    Decision decision = DecideNow();
    metrics_.next_renewal.Set(decision.at == absl::InfiniteFuture() ? 0 : absl::ToUnixSeconds(decision.at));
    if (decision.action == Action::kRenew || decision.action == Action::kRegister) {
      LogInfo("renewal_started", {{"cluster", options_.cluster}, {"why", decision.why}});
      (void)Act(decision.action);
      continue;
    }
    if (decision.action == Action::kStoreUnavailable) {
      RecordFailure(absl::UnavailableError(decision.why));  // the next decision waits on the retry schedule
      continue;
    }
    if (decision.action == Action::kStuck) {
      absl::MutexLock lock(&mu_);
      if (stuck_reason_ != decision.why) LogError("rotation_stuck", {{"cluster", options_.cluster}, {"why", decision.why}});
      stuck_reason_ = decision.why;
    } else {
      LogDebug("renewal_scheduled", {{"cluster", options_.cluster}, {"at", When(decision)}});
    }
    // Until the decision's time, or earlier when a watched secret changes (someone else
    // renewed, an operator replaced it or gave a token) or on Stop().
    clock_.SleepUntil(decision.at, wakeup_);
    absl::MutexLock lock(&mu_);
    if (changed_) {
      // A new client secret is a fresh start: the failures were about the old one.
      changed_ = false;
      failures_ = 0;
      last_refused_ = false;
    }
  }
}

std::string Rotator::HealthProblem() {
  RotationState state = ReadState();
  std::string problem = rotator::HealthProblem(state, clock_.Now(), options_.grace_period_ratio,
                                               pki::SerialJitter);
  absl::MutexLock lock(&mu_);
  if (!stuck_reason_.empty()) return stuck_reason_;
  return problem;
}

}  // namespace relay::rotator
