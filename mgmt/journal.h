#ifndef RELAY_MGMT_JOURNAL_H_
#define RELAY_MGMT_JOURNAL_H_

// An append-only file of lines with group commit: lines appended while a batch is being
// written share the next write() and fdatasync(), so persisting a record per issued
// certificate costs a fraction of an fsync under load. A writer thread of the journal's
// own does the I/O, so a caller can also be told by callback when its line is on disk
// (AppendAsync) instead of blocking a thread on it; that is what lets the gRPC callback
// handlers persist without stalling. Those callbacks run on a second thread, never the
// writer's, so a callback may itself append and wait (gRPC can run a new call's handler
// inline in the thread that finishes another call). A line cut short by a crash is
// ignored on the next open. Compact() rewrites the file (temporary file, fsync, rename)
// to hold only what the caller still needs.

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace relay::mgmt {

class Journal {
 public:
  // Opens (creating, mode 0600) `path`; `lines` receives the complete lines it holds.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       std::vector<std::string>* lines);
  ~Journal();

  // Runs once a line is on disk, or its write failed, on the journal's callback thread.
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // Queues `line` (no '\n' inside); `done` runs when it is durable. Lines are written in
  // the order they were queued.
  void AppendAsync(std::string line, Done done);

  // Returns once `line` (no '\n' inside) is on disk.
  absl::Status Append(const std::string& line);

  // Replaces the whole file with `lines`, atomically. Appends wait meanwhile.
  absl::Status Compact(const std::vector<std::string>& lines);

  // Lines appended since the last open or compaction.
  size_t appended() const;

 private:
  // A queued line and whom to tell: `done` on the callback thread, or, for Append,
  // `result` and `durable` set by the writer itself.
  struct Pending {
    std::string line;
    Done done;
    absl::Status* result = nullptr;
    absl::Notification* durable = nullptr;
  };

  Journal(std::string path, int fd);
  void Enqueue(Pending pending);
  void WriteBatches();
  void RunCallbacks();

  const std::string path_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);   // sticky: a failed write fails all later
  size_t appended_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex callbacks_mu_;
  std::vector<std::pair<Done, absl::Status>> callbacks_ ABSL_GUARDED_BY(callbacks_mu_);
  bool callbacks_stopping_ ABSL_GUARDED_BY(callbacks_mu_) = false;

  // Last: they start after the members they use.
  std::thread callback_thread_;
  std::thread writer_;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_JOURNAL_H_
