#ifndef RELAY_COMMON_SYNC_WAIT_H_
#define RELAY_COMMON_SYNC_WAIT_H_

// Waiting for an asynchronous operation's callback. The state the callback writes is
// owned jointly by the waiter and the callback, so the waiter may return (and its
// frame go) while the callback is still returning: Abseil 20220623's Notification may
// touch its mutex after a waiter that took the fast path has already returned, which a
// Notification on the waiter's stack turns into a use after free.

#include <memory>
#include <optional>
#include <utility>

#include "absl/synchronization/notification.h"

namespace relay {

// Calls `start(callback)` and returns the value `callback` is called with.
template <typename T, typename Start>
T SyncWait(Start&& start) {
  struct Shared {
    absl::Notification done;
    std::optional<T> value;
  };
  auto shared = std::make_shared<Shared>();
  std::forward<Start>(start)([shared](T value) {
    shared->value.emplace(std::move(value));
    shared->done.Notify();
  });
  shared->done.WaitForNotification();
  return std::move(*shared->value);
}

}  // namespace relay

#endif  // RELAY_COMMON_SYNC_WAIT_H_
