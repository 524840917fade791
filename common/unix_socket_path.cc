#include "common/unix_socket_path.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace relay {

absl::StatusOr<UnixSocketPath> UnixSocketPath::For(const std::string& path) {
  if (path.size() <= kMaxLength) return UnixSocketPath(path, path, -1);
  size_t slash = path.rfind('/');
  std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  int fd = open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    std::string message = absl::StrCat("cannot open the directory of socket ", path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::FailedPreconditionError(message);
  }
  std::string usable = absl::StrCat("/proc/self/fd/", fd, "/", name);
  if (usable.size() > kMaxLength) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("socket file name ", name, " is too long for a Unix socket: choose a shorter one"));
  }
  return UnixSocketPath(path, std::move(usable), fd);
}

UnixSocketPath::UnixSocketPath(UnixSocketPath&& other) noexcept
    : path_(std::move(other.path_)),
      usable_(std::move(other.usable_)),
      directory_fd_(std::exchange(other.directory_fd_, -1)) {}

UnixSocketPath& UnixSocketPath::operator=(UnixSocketPath&& other) noexcept {
  if (this != &other) {
    if (directory_fd_ >= 0) close(directory_fd_);
    path_ = std::move(other.path_);
    usable_ = std::move(other.usable_);
    directory_fd_ = std::exchange(other.directory_fd_, -1);
  }
  return *this;
}

UnixSocketPath::~UnixSocketPath() {
  if (directory_fd_ >= 0) close(directory_fd_);
}

}  // namespace relay
