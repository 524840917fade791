#ifndef RELAY_COMMON_STATE_LOCK_H_
#define RELAY_COMMON_STATE_LOCK_H_

// One process at a time on a state directory: two management servers on one store
// would each compact the registry journal under the other and split deregistrations
// between them. The lock is a POSIX record lock on <dir>/..relay.lock, so the kernel
// drops it when the holder dies (no stale lock after a crash) and names the holder's
// pid to whoever is refused.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace relay {

class StateLock {
 public:
  // Creates `dir` (0700) when missing and locks it for the life of the returned object.
  // `what` names this process in the lock file (for people who look). When another
  // process holds the lock: FAILED_PRECONDITION naming that process, then `advice`.
  static absl::StatusOr<std::unique_ptr<StateLock>> Acquire(const std::string& dir, const std::string& what,
                                                            const std::string& advice);
  ~StateLock();

  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace relay

#endif  // RELAY_COMMON_STATE_LOCK_H_
