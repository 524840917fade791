#ifndef RELAY_STATE_CALLBACK_THREAD_H_
#define RELAY_STATE_CALLBACK_THREAD_H_

// One thread that runs queued callbacks in the order they were queued: how the stores
// tell their callers "done" without running the caller's code on the caller's thread
// (a gRPC callback thread must not wait) or under the store's locks.

#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace relay::state {

class CallbackThread {
 public:
  CallbackThread();
  // Runs what is queued, then stops.
  ~CallbackThread();

  void Post(absl::AnyInvocable<void() &&> callback);

 private:
  void Run();

  absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace relay::state

#endif  // RELAY_STATE_CALLBACK_THREAD_H_
