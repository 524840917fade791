#ifndef RELAY_STATE_JOURNAL_H_
#define RELAY_STATE_JOURNAL_H_

// An append-only file of lines with group commit: lines appended while a batch is being
// written share the next write() and fdatasync(), so persisting a record per issued
// certificate costs a fraction of an fsync under load. A writer thread of the journal's
// own does the I/O, so a caller can also be told by callback when its line is on disk
// (AppendAsync) instead of blocking a thread on it; that is what lets the gRPC callback
// handlers persist without stalling. Those callbacks run on a second thread, never the
// writer's, so a callback may itself append and wait (gRPC can run a new call's handler
// inline in the thread that finishes another call). Compact() rewrites the file
// (temporary file, fsync, rename) to hold only what the caller still needs.
//
// Every record carries a checksum: the file starts with a header line (kJournalHeader)
// and each record is "<crc32 of the record, 8 hex digits> <record>". A record whose
// checksum does not match is damage, reported with the file and byte offset, and the
// file is left as it is (never compacted away); only a last line without its newline,
// which is what a crash during a write leaves, is dropped silently. A file without the
// header is the older format (no checksums), read as it is and rewritten with them at
// the next compaction.

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace relay::state {

inline constexpr char kJournalHeader[] = "# relay journal v2: <crc32> <record> per line";

// One record as read from a journal file.
struct JournalRecord {
  std::string text;     // the record (for a damaged one: the whole line as it is)
  size_t offset = 0;    // of its line in the file
  size_t line = 0;      // 1-based
  std::string problem;  // why it is damaged; empty when it is whole
};

// What a journal file holds, damage included.
struct JournalScan {
  bool checksummed = false;  // the header is there (else the older format)
  std::vector<JournalRecord> records;
  std::vector<JournalRecord> damaged;
  size_t torn_tail_bytes = 0;          // a last line without its newline
};

// Reads `path` without changing it. NOT_FOUND when it does not exist.
absl::StatusOr<JournalScan> ScanJournal(const std::string& path);

// Writes `records` as a complete journal file at `path` (header, checksums; temporary
// file, fsync, rename, directory fsync).
absl::Status WriteJournalFile(const std::string& path, const std::vector<std::string>& records);

class Journal {
 public:
  // Opens (creating, mode 0600) `path`; `records` receives the records it holds, in
  // order, and `checksummed` whether the file has the header (else it is the older
  // format). DATA_LOSS, naming the file and the byte offset, when a record is damaged;
  // the file is then left untouched.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       std::vector<JournalRecord>* records,
                                                       bool* checksummed = nullptr);
  ~Journal();

  // Runs once a line is on disk, or its write failed, on the journal's callback thread.
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // Queues `line` (a record, no '\n' inside); `done` runs when it is durable. Lines are
  // written in the order they were queued.
  void AppendAsync(std::string line, Done done);

  // What a caller that waits for its line is told, by the writer itself (so the wait
  // never depends on the callback thread's progress).
  struct Durable {
    absl::Status status;
    absl::Notification done;
  };
  // The same as AppendAsync, and the writer also fills `durable` (shared, so the waiter
  // may return while the writer is still notifying).
  void AppendAsync(std::string line, Done done, std::shared_ptr<Durable> durable);

  // Returns once `line` (no '\n' inside) is on disk.
  absl::Status Append(const std::string& line);

  // Runs `task` on the callback thread (where AppendAsync's callbacks run).
  void Post(absl::AnyInvocable<void() &&> task);

  // Replaces the whole file with `lines`, atomically. Appends wait meanwhile. A file
  // opened in the older format must be compacted before anything is appended.
  absl::Status Compact(const std::vector<std::string>& lines);

  // Lines appended since the last open or compaction.
  size_t appended() const;

 private:
  // A queued line and whom to tell: `done` on the callback thread, and/or `durable`
  // filled by the writer itself.
  struct Pending {
    std::string line;
    Done done;
    std::shared_ptr<Durable> durable;
  };

  Journal(std::string path, int fd, bool empty, bool checksummed);
  // Starts the writer and callback threads the first time they have work: a journal
  // opened only to be read (and compacted) costs no threads.
  void StartThreads();
  void Enqueue(Pending pending);
  void WriteBatches();
  void RunCallbacks();

  const std::string path_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  // The file is empty: the first write starts with the header.
  bool needs_header_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Sticky: a failed write fails all later ones, until a compaction rewrites the file.
  // A file in the older format starts out failed: records may follow only a header.
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  size_t appended_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex callbacks_mu_;
  std::vector<std::pair<Done, absl::Status>> callbacks_ ABSL_GUARDED_BY(callbacks_mu_);
  bool callbacks_stopping_ ABSL_GUARDED_BY(callbacks_mu_) = false;

  std::once_flag threads_started_;
  std::thread callback_thread_;
  std::thread writer_;
};

}  // namespace relay::state

#endif  // RELAY_STATE_JOURNAL_H_
