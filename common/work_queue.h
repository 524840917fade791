#ifndef RELAY_COMMON_WORK_QUEUE_H_
#define RELAY_COMMON_WORK_QUEUE_H_

// Threads of our own that run queued tasks: for the server's work that blocks (disk
// reads, a bootstrap token's redemption, a snapshot read for a new stream), since gRPC's
// callback threads must never wait (gRPC C++ guidance: reactions must not block); and,
// with one thread, for the state stores' "done" callbacks, which then run in the order
// they were queued, never on the caller's thread nor under a store's lock.

#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace relay {

class WorkQueue {
 public:
  // With threads == 1, tasks run one at a time in the order posted.
  explicit WorkQueue(int threads);
  // Runs what is queued, then joins.
  ~WorkQueue();

  void Post(absl::AnyInvocable<void() &&> task);

 private:
  void Run();

  absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // last: start after the members they use
};

}  // namespace relay

#endif  // RELAY_COMMON_WORK_QUEUE_H_
