#ifndef RELAY_STATE_LOCAL_STATE_STORE_H_
#define RELAY_STATE_LOCAL_STATE_STORE_H_

// The embedded backend of the state seam: one process, one directory.
//
//   <dir>/..relay.lock                 held for the store's life (common/state_lock.h)
//   <dir>/relay-registry.<ns>.log      the records: a checksummed journal (journal.h)
//   <dir>/<ns>/<name>/...              the secrets, in the kubelet volume layout
//
// Records are kept in memory and every write appends one journal line ("put\t<key>\t
// <value>" or "del\t<key>"), group-committed with concurrent writes; the journal is
// compacted to one line per record at start-up and as it grows. Journals of earlier
// versions (one "<cluster>\t<fields>" line per cluster record, no checksums) are read
// as the records "clusters/<cluster>" and rewritten in this format.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/state_lock.h"
#include "secrets/directory_store.h"
#include "state/journal.h"
#include "state/state_store.h"
#include "state/watch_list.h"

namespace relay::state {

struct LocalStateOptions {
  std::string dir;                    // created when missing
  std::string ns = "gloo-mesh";       // names the journal
  std::string holder = "relay-mgmt-server";  // written into the lock file
  // Said when another process holds the directory.
  std::string busy_advice = "Stop that process, or choose another directory.";
  // Named in the message when the journal is damaged.
  std::string repair_command;
};

class LocalStateStore : public StateStore {
 public:
  // Locks the directory, reads the journal and compacts it. FAILED_PRECONDITION when
  // another process holds the directory; DATA_LOSS (the file, the byte offset and
  // `repair_command`) when the journal is damaged, which is then left as it is.
  static absl::StatusOr<std::unique_ptr<LocalStateStore>> Open(const LocalStateOptions& options);
  ~LocalStateStore() override;

  absl::StatusOr<Record> Get(absl::string_view key) override;
  absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) override;
  void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                     Done done) override;
  absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                               int64_t expected_revision) override;
  std::unique_ptr<StateWatch> Watch(absl::string_view prefix, std::function<void(const Change&)> on_change) override;
  std::string Describe(absl::string_view key) override;
  secrets::SecretStore& secrets() override { return *secrets_; }

  const std::string& journal_path() const { return journal_path_; }

  // Where the journal of namespace `ns` lives in `dir`.
  static std::string JournalPath(const std::string& dir, const std::string& ns);

  // For `relayctl registry repair` (the store must not be open): keeps the damaged file
  // as <path>.damaged-<unix seconds> and writes one with every record that is whole and
  // that `valid` accepts (it sees each put's key and value). Lists what it dropped.
  struct Repair {
    std::string damaged_copy;          // empty: the file was whole, nothing was done
    std::vector<std::string> dropped;  // one line each: byte offset, key if readable, why
    size_t kept = 0;
  };
  static absl::StatusOr<Repair> RepairJournal(const std::string& path, absl::Time now,
                                              const std::function<absl::Status(absl::string_view key,
                                                                               absl::string_view value)>& valid);

 private:
  LocalStateStore(std::unique_ptr<StateLock> lock, std::string journal_path,
                  std::unique_ptr<secrets::DirectorySecretStore> secrets)
      : lock_(std::move(lock)), journal_path_(std::move(journal_path)), secrets_(std::move(secrets)) {}

  struct Entry {
    Record record;
    size_t offset = 0;  // of the line it was read from at start-up
    size_t line = 0;    // 0: written since start-up
  };
  absl::Status CompactLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks and applies a write, and queues its journal line (with `durable` when the
  // caller waits). The revision, or why it was refused.
  absl::StatusOr<int64_t> ApplyLocked(std::string key, std::optional<std::string> value, int64_t expected_revision,
                                      Done done, std::shared_ptr<Journal::Durable> durable)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeCompact();

  std::unique_ptr<StateLock> lock_;  // first: released last
  const std::string journal_path_;
  std::unique_ptr<secrets::DirectorySecretStore> secrets_;
  WatchList watchers_;
  absl::Mutex mu_;
  std::map<std::string, Entry> records_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<Journal> journal_;  // last: its threads stop first, running what is queued
};

}  // namespace relay::state

#endif  // RELAY_STATE_LOCAL_STATE_STORE_H_
