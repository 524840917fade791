#ifndef RELAY_AGENT_HEARTBEAT_H_
#define RELAY_AGENT_HEARTBEAT_H_

// Heartbeats on one relay stream, and the hand-over to a renewed certificate.
//
// The first heartbeat goes out at once (after a reconnect the server hears from the
// agent without waiting an interval), then one every `interval` of the injected clock.
// Before each, `ready_to_switch` is asked whether the stream's certificate should be
// left for a renewed one; if so, the last heartbeat is given up to one interval to be
// answered, then the stream is half-closed: the server ends it and the agent reconnects
// with the renewed certificate, with no heartbeat lost.

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/relay/v1/relay.pb.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace relay::agent {

class Heartbeat {
 public:
  struct Stream {
    // Sends one message; false once the stream takes no more.
    std::function<bool(const v1::AgentMessage&)> write;
    // Half-closes the stream: nothing is written after it.
    std::function<void()> writes_done;
  };

  // `clock` and `sent_total` must outlive this.
  Heartbeat(Clock& clock, absl::Duration interval, Stream stream, std::function<bool()> ready_to_switch,
            Counter& sent_total);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  void Start();
  // The server answered a heartbeat.
  void OnAck();
  // The stream ended: no more heartbeats. Safe to call more than once.
  void Stop();

  int64_t sent() const;
  // Heartbeats sent and not answered (so far; after Stop(), for good).
  int64_t unanswered() const;
  // True once it half-closed the stream to move to a renewed certificate.
  bool switching() const;

 private:
  void Run();
  void HandOver();
  bool Stopping() const;

  Clock& clock_;
  const absl::Duration interval_;
  const Stream stream_;
  const std::function<bool()> ready_to_switch_;
  Counter& sent_total_;
  Wakeup wakeup_;  // an answer arrived, or Stop()
  std::thread thread_;

  mutable absl::Mutex mu_;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool switching_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace relay::agent

#endif  // RELAY_AGENT_HEARTBEAT_H_
