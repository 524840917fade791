#ifndef RELAY_COMMON_UNIX_SOCKET_PATH_H_
#define RELAY_COMMON_UNIX_SOCKET_PATH_H_

// A Unix socket path that fits: sockaddr_un holds 107 bytes, and a state directory (a
// Kubernetes volume mount, Bazel's TEST_TMPDIR) can be longer. A longer path is reached
// as /proc/self/fd/<directory>/<name> through a descriptor of its directory, kept open
// for as long as this object lives; the socket file is the same either way.

#include <string>

#include "absl/status/statusor.h"

namespace relay {

class UnixSocketPath {
 public:
  // NOT_FOUND when the directory does not exist; INVALID_ARGUMENT when even the file
  // name alone is too long.
  static absl::StatusOr<UnixSocketPath> For(const std::string& path);

  UnixSocketPath(UnixSocketPath&& other) noexcept;
  UnixSocketPath& operator=(UnixSocketPath&& other) noexcept;
  ~UnixSocketPath();

  // The path as given (for messages and file checks).
  const std::string& path() const { return path_; }
  // The path to bind or connect: path() itself when short enough.
  const std::string& usable() const { return usable_; }

  static constexpr size_t kMaxLength = 107;  // sizeof(sockaddr_un::sun_path) - 1

 private:
  UnixSocketPath(std::string path, std::string usable, int directory_fd)
      : path_(std::move(path)), usable_(std::move(usable)), directory_fd_(directory_fd) {}

  std::string path_;
  std::string usable_;
  int directory_fd_ = -1;
};

}  // namespace relay

#endif  // RELAY_COMMON_UNIX_SOCKET_PATH_H_
