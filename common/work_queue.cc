#include "common/work_queue.h"

namespace relay {

WorkQueue::WorkQueue(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkQueue::~WorkQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

void WorkQueue::Post(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void WorkQueue::Run() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](WorkQueue* q) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !q->queue_.empty() || q->stopping_; }, this));
    if (queue_.empty()) return;  // stopping, and nothing left
    absl::AnyInvocable<void() &&> task = std::move(queue_.front());
    queue_.erase(queue_.begin());
    mu_.Unlock();
    std::move(task)();
    mu_.Lock();
  }
}

}  // namespace relay
