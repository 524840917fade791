#include "agent/heartbeat.h"

#include "absl/time/clock.h"

namespace relay::agent {

Heartbeat::Heartbeat(Clock& clock, absl::Duration interval, Stream stream, std::function<bool()> ready_to_switch,
                     Counter& sent_total)
    : clock_(clock),
      interval_(interval),
      stream_(std::move(stream)),
      ready_to_switch_(std::move(ready_to_switch)),
      sent_total_(sent_total) {}

Heartbeat::~Heartbeat() { Stop(); }

void Heartbeat::Start() { thread_ = std::thread([this] { Run(); }); }

void Heartbeat::OnAck() {
  {
    absl::MutexLock lock(&mu_);
    acked_++;
  }
  wakeup_.Notify();  // a hand-over may be waiting for this answer
}

void Heartbeat::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
}

int64_t Heartbeat::sent() const {
  absl::MutexLock lock(&mu_);
  return sent_;
}

int64_t Heartbeat::unanswered() const {
  absl::MutexLock lock(&mu_);
  return sent_ - acked_;
}

bool Heartbeat::switching() const {
  absl::MutexLock lock(&mu_);
  return switching_;
}

bool Heartbeat::Stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Heartbeat::Run() {
  int64_t sequence = 0;
  absl::Time next = clock_.Now();
  while (!Stopping()) {
    if (clock_.Now() < next) {
      clock_.SleepUntil(next, wakeup_);  // woken early by answers: look at the time again
      continue;
    }
    if (ready_to_switch_()) {
      HandOver();
      return;
    }
    v1::AgentMessage beat;
    beat.mutable_heartbeat()->set_sequence(++sequence);
    // The wall clock, not the injected one: the server echoes it (the round trip it
    // measures is the network's) and compares it with its own (clock skew).
    beat.mutable_heartbeat()->set_sent_unix_nanos(absl::ToUnixNanos(WallNow()));
    if (!stream_.write(beat)) return;
    {
      absl::MutexLock lock(&mu_);
      sent_++;
    }
    sent_total_.Increment();
    next = clock_.Now() + interval_;
  }
}

void Heartbeat::HandOver() {
  absl::Time give_up = clock_.Now() + interval_;
  auto answered = [this] {
    absl::MutexLock lock(&mu_);
    return stopping_ || acked_ >= sent_;
  };
  while (!answered() && clock_.Now() < give_up) clock_.SleepUntil(give_up, wakeup_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;  // the stream ended meanwhile: an ordinary reconnect
    switching_ = true;
  }
  stream_.writes_done();
}

}  // namespace relay::agent
