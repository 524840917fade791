#include "mgmt/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"

namespace relay::mgmt {
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

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       std::vector<std::string>* lines) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot open journal", path);
  std::string content;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return Errno("cannot read journal", path);
    }
    content.append(buffer, static_cast<size_t>(n));
  }
  // A last line without its newline was cut short by a crash: drop it.
  size_t complete = content.rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  if (complete != content.size() && ftruncate(fd, static_cast<off_t>(complete)) != 0) {
    close(fd);
    return Errno("cannot repair journal", path);
  }
  for (absl::string_view line : absl::StrSplit(absl::string_view(content).substr(0, complete), '\n',
                                               absl::SkipEmpty())) {
    lines->emplace_back(line);
  }
  return std::unique_ptr<Journal>(new Journal(path, fd));
}

Journal::Journal(std::string path, int fd)
    : path_(std::move(path)),
      fd_(fd),
      callback_thread_([this] { RunCallbacks(); }),
      writer_([this] { WriteBatches(); }) {}

Journal::~Journal() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();  // writes what is queued first
  {
    absl::MutexLock lock(&callbacks_mu_);
    callbacks_stopping_ = true;
  }
  callback_thread_.join();  // runs what is left
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) close(fd_);
}

size_t Journal::appended() const {
  absl::MutexLock lock(&mu_);
  return appended_;
}

void Journal::Enqueue(Pending pending) {
  pending.line += '\n';
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(pending));
  appended_++;
}

void Journal::AppendAsync(std::string line, Done done) { Enqueue(Pending{std::move(line), std::move(done)}); }

absl::Status Journal::Append(const std::string& line) {
  absl::Notification durable;
  absl::Status result;
  Enqueue(Pending{line, nullptr, &result, &durable});
  durable.WaitForNotification();
  return result;
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
      *pending.result = status;
      pending.durable->Notify();
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
  std::string temp = path_ + ".compact";
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", temp);
  std::string content;
  for (const std::string& line : lines) absl::StrAppend(&content, line, "\n");
  absl::Status status = WriteAll(fd, content, temp);
  if (status.ok() && fsync(fd) != 0) status = Errno("cannot sync", temp);
  close(fd);
  if (status.ok() && rename(temp.c_str(), path_.c_str()) != 0) status = Errno("cannot replace", path_);
  if (!status.ok()) {
    unlink(temp.c_str());
    return status;
  }
  std::string dir = path_.substr(0, path_.rfind('/'));
  int dir_fd = open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  int reopened = open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (reopened < 0) return Errno("cannot reopen journal", path_);
  close(fd_);
  fd_ = reopened;
  appended_ = 0;
  return absl::OkStatus();
}

}  // namespace relay::mgmt
