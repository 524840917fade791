#include "state/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "zlib.h"

namespace relay::state {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("cannot write", path);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string Checksum(absl::string_view record) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(record.data()), static_cast<uInt>(record.size()));
  return absl::StrFormat("%08x", static_cast<uint32_t>(crc));
}

std::string FramedLine(absl::string_view record) { return absl::StrCat(Checksum(record), " ", record, "\n"); }

absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
  std::string content;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("cannot read journal", path);
    content.append(buffer, static_cast<size_t>(n));
  }
  return content;
}

JournalScan Scan(absl::string_view content) {
  JournalScan scan;
  // A last line without its newline was cut short by a crash.
  size_t complete = content.rfind('\n');
  complete = complete == absl::string_view::npos ? 0 : complete + 1;
  scan.torn_tail_bytes = content.size() - complete;
  size_t offset = 0;
  size_t number = 0;
  while (offset < complete) {
    size_t end = content.find('\n', offset);
    absl::string_view line = content.substr(offset, end - offset);
    number++;
    JournalRecord record{std::string(line), offset, number};
    offset = end + 1;
    if (number == 1 && line == kJournalHeader) {
      scan.checksummed = true;
      continue;
    }
    if (!scan.checksummed) {
      if (!line.empty()) scan.records.push_back(std::move(record));
      continue;
    }
    if (line.size() < 9 || line[8] != ' ') {
      record.problem = "the line has no checksum";
      scan.damaged.push_back(std::move(record));
      continue;
    }
    absl::string_view text = line.substr(9);
    if (Checksum(text) != line.substr(0, 8)) {
      record.problem = "the checksum does not match the record";
      scan.damaged.push_back(std::move(record));
      continue;
    }
    record.text = std::string(text);
    scan.records.push_back(std::move(record));
  }
  return scan;
}

}  // namespace

absl::StatusOr<JournalScan> ScanJournal(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("journal ", path, " does not exist"));
    return Errno("cannot open journal", path);
  }
  absl::StatusOr<std::string> content = ReadAll(fd, path);
  close(fd);
  if (!content.ok()) return content.status();
  return Scan(*content);
}

absl::Status WriteJournalFile(const std::string& path, const std::vector<std::string>& records) {
  std::string temp = path + ".compact";
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", temp);
  std::string content = absl::StrCat(kJournalHeader, "\n");
  for (const std::string& record : records) content += FramedLine(record);
  absl::Status status = WriteAll(fd, content, temp);
  if (status.ok() && fsync(fd) != 0) status = Errno("cannot sync", temp);
  close(fd);
  if (status.ok() && rename(temp.c_str(), path.c_str()) != 0) status = Errno("cannot replace", path);
  if (!status.ok()) {
    unlink(temp.c_str());
    return status;
  }
  std::string dir = path.substr(0, path.rfind('/'));
  int dir_fd = open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       std::vector<JournalRecord>* records,
                                                       bool* checksummed) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot open journal", path);
  absl::StatusOr<std::string> content = ReadAll(fd, path);
  if (!content.ok()) {
    close(fd);
    return content.status();
  }
  JournalScan scan = Scan(*content);
  if (!scan.damaged.empty()) {
    close(fd);
    const JournalRecord& first = scan.damaged.front();
    return absl::DataLossError(absl::StrCat(
        "journal ", path, " is damaged at byte ", first.offset, " (line ", first.line, "): ",
        first.problem, scan.damaged.size() > 1 ? absl::StrCat("; ", scan.damaged.size() - 1, " more damaged line(s)") : ""));
  }
  if (scan.torn_tail_bytes > 0 &&
      ftruncate(fd, static_cast<off_t>(content->size() - scan.torn_tail_bytes)) != 0) {
    close(fd);
    return Errno("cannot repair journal", path);
  }
  for (JournalRecord& record : scan.records) records->push_back(std::move(record));
  if (checksummed != nullptr) *checksummed = scan.checksummed || content->size() == scan.torn_tail_bytes;
  bool empty = content->size() == scan.torn_tail_bytes;
  return std::unique_ptr<Journal>(new Journal(path, fd, empty, scan.checksummed));
}

Journal::Journal(std::string path, int fd, bool empty, bool checksummed)
    : path_(std::move(path)),
      fd_(fd),
      needs_header_(empty),
      failure_(empty || checksummed ? absl::OkStatus()
                                    : absl::FailedPreconditionError(absl::StrCat(
                                          "journal ", path_, " is in the older format: compact it first"))) {}

void Journal::StartThreads() {
  std::call_once(threads_started_, [this] {
    callback_thread_ = std::thread([this] { RunCallbacks(); });
    writer_ = std::thread([this] { WriteBatches(); });
  });
}

Journal::~Journal() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Nothing else uses the journal now, so the threads either started or never will.
  if (writer_.joinable()) writer_.join();  // writes what is queued first
  {
    absl::MutexLock lock(&callbacks_mu_);
    callbacks_stopping_ = true;
  }
  if (callback_thread_.joinable()) callback_thread_.join();  // runs what is left
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) close(fd_);
}

size_t Journal::appended() const {
  absl::MutexLock lock(&mu_);
  return appended_;
}

void Journal::Enqueue(Pending pending) {
  StartThreads();
  pending.line = FramedLine(pending.line);
  absl::MutexLock lock(&mu_);
  if (needs_header_) {
    // The first record of an empty file: the header goes first, in the same write.
    pending.line = absl::StrCat(kJournalHeader, "\n", pending.line);
    needs_header_ = false;
  }
  queue_.push_back(std::move(pending));
  appended_++;
}

void Journal::AppendAsync(std::string line, Done done) { Enqueue(Pending{std::move(line), std::move(done)}); }

void Journal::AppendAsync(std::string line, Done done, std::shared_ptr<Durable> durable) {
  Enqueue(Pending{std::move(line), std::move(done), std::move(durable)});
}

absl::Status Journal::Append(const std::string& line) {
  auto durable = std::make_shared<Durable>();
  Enqueue(Pending{line, nullptr, durable});
  durable->done.WaitForNotification();
  return durable->status;
}

void Journal::Post(absl::AnyInvocable<void() &&> task) {
  StartThreads();
  absl::MutexLock lock(&callbacks_mu_);
  callbacks_.emplace_back([task = std::move(task)](absl::Status) mutable { std::move(task)(); }, absl::OkStatus());
}

void Journal::WriteBatches() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](Journal* j) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !j->queue_.empty() || j->stopping_; }, this));
    if (queue_.empty()) return;  // stopping, and nothing left to write
    // Everything queued so far: one write, one fdatasync.
    std::vector<Pending> batch;
    batch.swap(queue_);
    writing_ = true;
    int fd = fd_;
    absl::Status status = failure_;  // sticky: after a failed write nothing is written
    mu_.Unlock();
    if (status.ok()) {
      std::string data;
      for (const Pending& pending : batch) data += pending.line;
      status = WriteAll(fd, data, path_);
      if (status.ok() && fdatasync(fd) != 0) status = Errno("cannot sync journal", path_);
    }
    mu_.Lock();
    writing_ = false;
    if (!status.ok()) failure_ = status;
    mu_.Unlock();
    {
      absl::MutexLock callbacks(&callbacks_mu_);
      for (Pending& pending : batch) {
        if (pending.done) callbacks_.emplace_back(std::move(pending.done), status);
      }
    }
    for (Pending& pending : batch) {
      if (pending.durable == nullptr) continue;
      pending.durable->status = status;
      pending.durable->done.Notify();
    }
    mu_.Lock();
  }
}

void Journal::RunCallbacks() {
  absl::MutexLock lock(&callbacks_mu_);
  while (true) {
    callbacks_mu_.Await(absl::Condition(
        +[](Journal* j) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !j->callbacks_.empty() || j->callbacks_stopping_; },
        this));
    if (callbacks_.empty()) return;  // stopping, and nothing left to run
    std::vector<std::pair<Done, absl::Status>> ready;
    ready.swap(callbacks_);
    callbacks_mu_.Unlock();
    for (auto& [done, status] : ready) std::move(done)(status);
    callbacks_mu_.Lock();
  }
}

absl::Status Journal::Compact(const std::vector<std::string>& lines) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](Journal* j) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !j->writing_; }, this));
  RETURN_IF_ERROR(WriteJournalFile(path_, lines));
  int reopened = open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (reopened < 0) return Errno("cannot reopen journal", path_);
  close(fd_);
  fd_ = reopened;
  needs_header_ = false;
  failure_ = absl::OkStatus();
  appended_ = 0;
  return absl::OkStatus();
}

}  // namespace relay::state
