#ifndef RELAY_MGMT_JOURNAL_H_
#define RELAY_MGMT_JOURNAL_H_

// An append-only file of lines with group commit: concurrent Append() calls share one
// write() and one fdatasync(), so persisting a record per issued certificate costs a
// fraction of an fsync under load instead of a directory swap each. A line cut short by
// a crash is ignored on the next open. Compact() rewrites the file (temporary file,
// fsync, rename) to hold only what the caller still needs.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace relay::mgmt {

class Journal {
 public:
  // Opens (creating, mode 0600) `path`; `lines` receives the complete lines it holds.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       std::vector<std::string>* lines);
  ~Journal();

  // Returns once `line` (no '\n' inside) is on disk.
  absl::Status Append(const std::string& line);

  // Replaces the whole file with `lines`, atomically. Appends wait meanwhile.
  absl::Status Compact(const std::vector<std::string>& lines);

  // Lines appended since the last open or compaction.
  size_t appended() const;

 private:
  Journal(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;  // sequence of the last queued line
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;   // sequence of the last line on disk
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);   // sticky: a failed write fails all later
  size_t appended_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_JOURNAL_H_
