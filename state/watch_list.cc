#include "state/watch_list.h"

#include <algorithm>

#include "absl/strings/match.h"

namespace relay::state {

class WatchList::Handle : public StateWatch {
 public:
  Handle(WatchList* list, std::shared_ptr<Watcher> watcher) : list_(list), watcher_(std::move(watcher)) {}
  ~Handle() override {
    {
      absl::MutexLock lock(&list_->mu_);
      auto& watchers = list_->watchers_;
      watchers.erase(std::remove(watchers.begin(), watchers.end(), watcher_), watchers.end());
    }
    watcher_->active = false;
    // Wait for a call under way, unless this destructor runs inside it.
    if (watcher_->caller.load() != std::this_thread::get_id()) {
      absl::MutexLock lock(&watcher_->call_mu);
    }
  }

 private:
  WatchList* const list_;
  std::shared_ptr<Watcher> watcher_;
};

std::unique_ptr<StateWatch> WatchList::Add(absl::string_view prefix, std::function<void(const Change&)> on_change) {
  auto watcher = std::make_shared<Watcher>();
  watcher->prefix = std::string(prefix);
  watcher->on_change = std::move(on_change);
  absl::MutexLock lock(&mu_);
  watchers_.push_back(watcher);
  return std::make_unique<Handle>(this, watcher);
}

void WatchList::Notify(const Change& change) {
  std::vector<std::shared_ptr<Watcher>> matching;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& watcher : watchers_) {
      if (absl::StartsWith(change.key, watcher->prefix)) matching.push_back(watcher);
    }
  }
  for (const auto& watcher : matching) {
    absl::MutexLock lock(&watcher->call_mu);
    if (!watcher->active) continue;
    watcher->caller = std::this_thread::get_id();
    watcher->on_change(change);
    watcher->caller = std::thread::id();
  }
}

}  // namespace relay::state
