#ifndef RELAY_MGMT_WORK_QUEUE_H_
#define RELAY_MGMT_WORK_QUEUE_H_

// Threads of the server's own for work that blocks (disk reads, a bootstrap token's
// redemption, a snapshot read for a new stream): gRPC's callback threads must never
// wait (gRPC C++ guidance: reactions must not block).

#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace relay::mgmt {

class WorkQueue {
 public:
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

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_WORK_QUEUE_H_
