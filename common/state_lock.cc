#include "common/state_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace relay {
namespace {

absl::Status MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string partial = path.substr(0, pos);
    if (mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create directory ", partial, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// "process 1234 (server)" from /proc, as far as it can be read.
std::string DescribeProcess(pid_t pid) {
  std::ifstream comm(absl::StrCat("/proc/", pid, "/comm"));
  std::stringstream name;
  name << comm.rdbuf();
  std::string text = std::string(absl::StripAsciiWhitespace(name.str()));
  return text.empty() ? absl::StrCat("process ", pid) : absl::StrCat("process ", pid, " (", text, ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateLock>> StateLock::Acquire(const std::string& dir, const std::string& what,
                                                              const std::string& advice) {
  if (absl::Status made = MakeDirs(dir); !made.ok()) return made;
  std::string path = dir + "/..relay.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open the lock file ", path, ": ", std::strerror(errno)));
  }
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &lock) != 0) {
    int error = errno;
    struct flock holder {};
    holder.l_type = F_WRLCK;
    holder.l_whence = SEEK_SET;
    std::string who = "another process";
    if ((error == EACCES || error == EAGAIN) && fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK &&
        holder.l_pid > 0) {
      who = DescribeProcess(holder.l_pid);
    }
    close(fd);
    if (error != EACCES && error != EAGAIN) {
      return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " is in use by ", who, ", which holds its lock (", path, "): only one process may use this "
        "state at a time. ", advice));
  }
  // For people: who holds it. The lock itself, not this text, is what counts.
  std::string note = absl::StrCat(getpid(), " ", what, "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, note.data(), note.size(), 0) < 0) {
    // Not fatal: the lock is held either way.
  }
  return std::unique_ptr<StateLock>(new StateLock(fd));
}

StateLock::~StateLock() { close(fd_); }

}  // namespace relay
