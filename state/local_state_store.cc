#include "state/local_state_store.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace relay::state {
namespace {

// Compact once the journal holds this many lines beyond one per record.
constexpr size_t kCompactAfter = 4096;

constexpr char kClusterPrefix[] = "clusters/";

std::string PutLine(absl::string_view key, absl::string_view value) { return absl::StrCat("put\t", key, "\t", value); }
std::string DeleteLine(absl::string_view key) { return absl::StrCat("del\t", key); }

// A journal line as a change. Lines of the older format name a cluster record.
struct ParsedLine {
  std::string key;
  std::optional<std::string> value;
};
absl::StatusOr<ParsedLine> ParseLine(absl::string_view line, bool checksummed) {
  if (!checksummed) {
    std::pair<absl::string_view, absl::string_view> entry = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    if (!IsDnsLabel(entry.first)) return absl::InvalidArgumentError("the cluster name is not a DNS label");
    return ParsedLine{absl::StrCat(kClusterPrefix, entry.first), std::string(entry.second)};
  }
  std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits('\t', 2));
  if (fields.size() == 3 && fields[0] == "put") {
    RETURN_IF_ERROR(ValidateKey(fields[1]));
    return ParsedLine{std::string(fields[1]), std::string(fields[2])};
  }
  if (fields.size() == 2 && fields[0] == "del") {
    RETURN_IF_ERROR(ValidateKey(fields[1]));
    return ParsedLine{std::string(fields[1]), std::nullopt};
  }
  return absl::InvalidArgumentError("the line is neither a put nor a del");
}

}  // namespace

std::string LocalStateStore::JournalPath(const std::string& dir, const std::string& ns) {
  return absl::StrCat(dir, "/relay-registry.", ns, ".log");
}

absl::StatusOr<std::unique_ptr<LocalStateStore>> LocalStateStore::Open(const LocalStateOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<StateLock> lock, StateLock::Acquire(options.dir, options.holder, options.busy_advice));
  ASSIGN_OR_RETURN(std::unique_ptr<secrets::DirectorySecretStore> secrets,
                   secrets::DirectorySecretStore::Create(options.dir));
  std::string path = JournalPath(options.dir, options.ns);
  std::string repair =
      options.repair_command.empty()
          ? std::string()
          : absl::StrCat(". The file is left as it is. Stop the server, keep a copy of the file, then run: ",
                         options.repair_command,
                         " (it keeps the damaged file aside and every whole record; it lists the records it "
                         "drops, whose clusters you should check)");
  std::unique_ptr<LocalStateStore> store(new LocalStateStore(std::move(lock), path, std::move(secrets)));
  std::vector<JournalRecord> lines;
  bool checksummed = true;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(path, &lines, &checksummed);
  if (!journal.ok()) {
    if (absl::IsDataLoss(journal.status())) return absl::DataLossError(absl::StrCat(journal.status().message(), repair));
    return journal.status();
  }
  store->journal_ = *std::move(journal);
  absl::MutexLock lock_records(&store->mu_);
  for (const JournalRecord& line : lines) {  // later lines win
    absl::StatusOr<ParsedLine> parsed = ParseLine(line.text, checksummed);
    if (!parsed.ok()) {
      return absl::DataLossError(absl::StrCat("journal ", path, " is damaged at byte ", line.offset, " (line ",
                                              line.line, "): ", parsed.status().message(), repair));
    }
    if (parsed->value) {
      store->records_[parsed->key] = Entry{Record{*std::move(parsed->value), ++store->revision_}, line.offset, line.line};
    } else {
      store->records_.erase(parsed->key);
    }
  }
  RETURN_IF_ERROR(store->CompactLocked());
  return store;
}

LocalStateStore::~LocalStateStore() = default;

absl::Status LocalStateStore::CompactLocked() {
  std::vector<std::string> lines;
  lines.reserve(records_.size());
  for (const auto& [key, entry] : records_) lines.push_back(PutLine(key, entry.record.value));
  return journal_->Compact(lines);
}

void LocalStateStore::MaybeCompact() {
  absl::MutexLock lock(&mu_);
  if (journal_->appended() <= kCompactAfter + records_.size()) return;
  if (absl::Status status = CompactLocked(); !status.ok()) {
    // The records are still in the uncompacted journal; the next write tries again.
    std::fprintf(stderr, "relay: compacting %s failed: %s\n", journal_path_.c_str(),
                 std::string(status.message()).c_str());
  }
}

absl::StatusOr<Record> LocalStateStore::Get(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(std::string(key));
  if (it == records_.end()) return absl::NotFoundError(absl::StrCat("no record ", key));
  return it->second.record;
}

absl::StatusOr<std::map<std::string, Record>> LocalStateStore::List(absl::string_view prefix) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, Record> found;
  for (auto it = records_.lower_bound(std::string(prefix)); it != records_.end() && absl::StartsWith(it->first, prefix);
       ++it) {
    found.emplace(it->first, it->second.record);
  }
  return found;
}

absl::StatusOr<int64_t> LocalStateStore::ApplyLocked(std::string key, std::optional<std::string> value,
                                                     int64_t expected_revision, Done done,
                                                     std::shared_ptr<Journal::Durable> durable) {
  auto it = records_.find(key);
  RETURN_IF_ERROR(
      CheckCompareAndSet(key, value, it == records_.end() ? 0 : it->second.record.revision, expected_revision));
  // Applied now, so that the next write of the key builds on it; the line is queued
  // under the same lock, so the journal holds the writes in revision order.
  int64_t revision = ++revision_;
  std::string line = value ? PutLine(key, *value) : DeleteLine(key);
  if (value) {
    records_[key] = Entry{Record{*value, revision}, 0, 0};
  } else {
    records_.erase(it);
  }
  Change change{std::move(key), std::move(value), revision};
  auto then = [this, change = std::move(change), done = std::move(done)](absl::Status written) mutable {
    if (written.ok()) watchers_.Notify(change);
    if (done) std::move(done)(written.ok() ? absl::StatusOr<int64_t>(change.revision) : written);
  };
  if (durable != nullptr) {
    journal_->AppendAsync(std::move(line), std::move(then), std::move(durable));
  } else {
    journal_->AppendAsync(std::move(line), std::move(then));
  }
  return revision;
}

void LocalStateStore::CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                                    Done done) {
  // `done` goes with the line when the write is accepted; a refusal keeps it here.
  auto shared_done = std::make_shared<Done>(std::move(done));
  absl::StatusOr<int64_t> applied;
  {
    absl::MutexLock lock(&mu_);
    applied = ApplyLocked(std::move(key), std::move(value), expected_revision,
                          [shared_done](absl::StatusOr<int64_t> outcome) { std::move (*shared_done)(std::move(outcome)); },
                          nullptr);
  }
  if (!applied.ok()) {
    // Told on the journal's callback thread too: never on the caller's.
    journal_->Post([shared_done, refused = applied.status()]() { std::move(*shared_done)(refused); });
    return;
  }
  MaybeCompact();
}

absl::StatusOr<int64_t> LocalStateStore::CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                                              int64_t expected_revision) {
  auto durable = std::make_shared<Journal::Durable>();
  absl::StatusOr<int64_t> applied;
  {
    absl::MutexLock lock(&mu_);
    applied = ApplyLocked(std::move(key), std::move(value), expected_revision, nullptr, durable);
  }
  if (!applied.ok()) return applied.status();
  durable->done.WaitForNotification();  // set by the journal's writer, not its callback thread
  MaybeCompact();
  if (!durable->status.ok()) return durable->status;
  return applied;
}

std::unique_ptr<StateWatch> LocalStateStore::Watch(absl::string_view prefix,
                                                   std::function<void(const Change&)> on_change) {
  return watchers_.Add(prefix, std::move(on_change));
}

std::string LocalStateStore::Describe(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(std::string(key));
  if (it == records_.end() || it->second.line == 0) return absl::StrCat("record ", key, " in journal ", journal_path_);
  return absl::StrCat("record ", key, " in journal ", journal_path_, " (read from byte ", it->second.offset, ", line ",
                      it->second.line, ")");
}

absl::StatusOr<LocalStateStore::Repair> LocalStateStore::RepairJournal(
    const std::string& path, absl::Time now,
    const std::function<absl::Status(absl::string_view key, absl::string_view value)>& valid) {
  ASSIGN_OR_RETURN(JournalScan scan, ScanJournal(path));
  Repair repair;
  std::vector<JournalRecord> lines = scan.records;
  lines.insert(lines.end(), scan.damaged.begin(), scan.damaged.end());
  std::sort(lines.begin(), lines.end(), [](const JournalRecord& a, const JournalRecord& b) { return a.offset < b.offset; });
  auto drop = [&](const JournalRecord& line, absl::string_view why, absl::string_view key) {
    repair.dropped.push_back(absl::StrCat("byte ", line.offset, " (line ", line.line, ")",
                                          key.empty() ? "" : absl::StrCat(", ", key), ": ", why));
  };
  // The key a (possibly damaged) line names, when it can still be read.
  auto key_of = [&](absl::string_view text) -> std::string {
    if (!scan.checksummed) {
      absl::string_view name = text.substr(0, text.find('\t'));
      return IsDnsLabel(name) ? absl::StrCat(kClusterPrefix, name) : "";
    }
    if (text.size() > 9 && text[8] == ' ') text.remove_prefix(9);  // the checksum
    std::vector<absl::string_view> fields = absl::StrSplit(text, absl::MaxSplits('\t', 2));
    return fields.size() >= 2 && ValidateKey(fields[1]).ok() ? std::string(fields[1]) : "";
  };
  std::vector<std::string> kept;
  for (const JournalRecord& line : lines) {
    if (!line.problem.empty()) {
      drop(line, line.problem, key_of(line.text));
      continue;
    }
    absl::StatusOr<ParsedLine> parsed = ParseLine(line.text, scan.checksummed);
    if (!parsed.ok()) {
      drop(line, parsed.status().message(), key_of(line.text));
      continue;
    }
    if (parsed->value) {
      if (absl::Status ok = valid(parsed->key, *parsed->value); !ok.ok()) {
        drop(line, ok.message(), parsed->key);
        continue;
      }
      kept.push_back(PutLine(parsed->key, *parsed->value));
    } else {
      kept.push_back(DeleteLine(parsed->key));
    }
  }
  repair.kept = kept.size();
  if (repair.dropped.empty() && scan.torn_tail_bytes == 0 && scan.checksummed) return repair;
  repair.damaged_copy = absl::StrCat(path, ".damaged-", absl::ToUnixSeconds(now));
  if (rename(path.c_str(), repair.damaged_copy.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot keep ", path, " aside as ", repair.damaged_copy, ": ", std::strerror(errno)));
  }
  RETURN_IF_ERROR(WriteJournalFile(path, kept));
  return repair;
}

}  // namespace relay::state
