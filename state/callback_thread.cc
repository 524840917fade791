#include "state/callback_thread.h"

namespace relay::state {

CallbackThread::CallbackThread() : thread_([this] { Run(); }) {}

CallbackThread::~CallbackThread() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void CallbackThread::Post(absl::AnyInvocable<void() &&> callback) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(callback));
}

void CallbackThread::Run() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](CallbackThread* t) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !t->queue_.empty() || t->stopping_; }, this));
    if (queue_.empty()) return;  // stopping, and nothing left
    std::vector<absl::AnyInvocable<void() &&>> ready;
    ready.swap(queue_);
    mu_.Unlock();
    for (auto& callback : ready) std::move(callback)();
    mu_.Lock();
  }
}

}  // namespace relay::state
