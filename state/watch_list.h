#ifndef RELAY_STATE_WATCH_LIST_H_
#define RELAY_STATE_WATCH_LIST_H_

// The watchers of a store, shared by its backends: Notify() calls every watcher whose
// prefix matches, and a watch that is destroyed is never called after its destructor
// returns (it waits for a call under way, unless it is destroyed from that very call).

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "state/state_store.h"

namespace relay::state {

class WatchList {
 public:
  std::unique_ptr<StateWatch> Add(absl::string_view prefix, std::function<void(const Change&)> on_change);
  void Notify(const Change& change);

 private:
  struct Watcher {
    std::string prefix;
    std::function<void(const Change&)> on_change;
    absl::Mutex call_mu;                  // held while on_change runs
    std::atomic<bool> active{true};
    std::atomic<std::thread::id> caller;  // the thread in on_change, if any
  };
  class Handle;

  absl::Mutex mu_;
  std::vector<std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::state

#endif  // RELAY_STATE_WATCH_LIST_H_
