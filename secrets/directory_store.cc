#include "secrets/directory_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace relay::secrets {
namespace {

constexpr char kDataLink[] = "..data";
constexpr char kLockFile[] = "..lock";
constexpr int kReadAttempts = 50;

absl::Status ErrnoError(absl::string_view what, absl::string_view path, int error) {
  std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == EACCES || error == EPERM) {
    return absl::PermissionDeniedError(absl::StrCat(message, " (check the directory's owner and mode)"));
  }
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == ENOSPC) return absl::ResourceExhaustedError(absl::StrCat(message, " (disk full)"));
  return absl::InternalError(message);
}

bool IsPlainName(absl::string_view entry) { return !entry.empty() && entry[0] != '.'; }

// A secret key's file, as the kubelet's atomic writer lays them out: every name but its
// own bookkeeping, which starts with "..". A key may start with one dot (".dockercfg").
bool IsKeyName(absl::string_view entry) {
  return !entry.empty() && entry != "." && !absl::StartsWith(entry, "..");
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoError("cannot list", path, errno);
  absl::Cleanup close_dir = [dir] { closedir(dir); };
  std::vector<std::string> entries;
  while (dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    entries.emplace_back(name);
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

// Reads a regular file (following a symlink only with `follow_links`), refusing
// anything over `limit` bytes. O_NONBLOCK: opening a FIFO planted where a key should be
// must not block the reader forever (it is then refused as "not a file").
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t limit, bool follow_links = true) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow_links ? 0 : O_NOFOLLOW));
  if (fd < 0) return ErrnoError("cannot read", path, errno);
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat info;
  if (fstat(fd, &info) != 0) return ErrnoError("cannot stat", path, errno);
  if (!S_ISREG(info.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " is not a file"));
  if (static_cast<size_t>(info.st_size) > limit) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is ", info.st_size, " bytes, over the secret limit of ", limit));
  }
  std::string data(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = read(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("cannot read", path, errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

absl::Status WriteFileSynced(const std::string& path, absl::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot create", path, errno);
  absl::Cleanup close_fd = [fd] { close(fd); };
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("cannot write", path, errno);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return ErrnoError("cannot sync", path, errno);
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path, errno);
  absl::Cleanup close_fd = [fd] { close(fd); };
  if (fsync(fd) != 0) return ErrnoError("cannot sync", path, errno);
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory", partial, errno);
    }
  }
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  struct stat info;
  if (lstat(path.c_str(), &info) != 0) return errno == ENOENT ? absl::OkStatus() : ErrnoError("cannot stat", path, errno);
  if (S_ISDIR(info.st_mode)) {
    ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(path));
    for (const std::string& entry : entries) RETURN_IF_ERROR(RemoveTree(path + "/" + entry));
    if (rmdir(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("cannot remove", path, errno);
  } else if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot remove", path, errno);
  }
  return absl::OkStatus();
}

std::string RandomSuffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(getpid(), ".", counter.fetch_add(1), ".", rng() % 1000000);
}

// The kubelet's version directory name: ..2026_11_27_10_00_00.123456789
std::string VersionDirName(absl::Time now) {
  absl::Duration subsecond = now - absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  return absl::StrCat(absl::FormatTime("..%Y_%m_%d_%H_%M_%S", now, absl::UTCTimeZone()), ".",
                      absl::StrFormat("%09d", absl::ToInt64Nanoseconds(subsecond)));
}

absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char target[4096];
  ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
  if (n < 0) return ErrnoError("cannot read link", path, errno);
  return std::string(target, static_cast<size_t>(n));
}

// Reads the keys of one version directory (or of a plain secret directory). A version
// directory holds the files themselves (the kubelet writes them so), so a symlink there
// is not followed: it could lead anywhere.
absl::StatusOr<SecretData> ReadKeys(const std::string& dir, bool follow_links) {
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(dir));
  SecretData data;
  size_t total = 0;
  for (const std::string& entry : entries) {
    if (!IsKeyName(entry)) continue;
    if (data.size() == kMaxSecretKeys) {
      return absl::FailedPreconditionError(absl::StrCat(dir, " holds more than ", kMaxSecretKeys, " keys"));
    }
    ASSIGN_OR_RETURN(std::string value, ReadFile(dir + "/" + entry, kMaxSecretBytes - total, follow_links));
    total += value.size();
    data.emplace(entry, std::move(value));
  }
  return data;
}

// Holds an exclusive flock on the secret directory's lock file.
class WriterLock {
 public:
  static absl::StatusOr<WriterLock> Acquire(const std::string& secret_dir) {
    std::string path = secret_dir + "/" + kLockFile;
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError("cannot open lock", path, errno);
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        int error = errno;
        close(fd);
        return ErrnoError("cannot lock", path, error);
      }
    }
    return WriterLock(fd);
  }
  WriterLock(WriterLock&& other) : fd_(std::exchange(other.fd_, -1)) {}
  ~WriterLock() {
    if (fd_ >= 0) close(fd_);  // releases the flock
  }

 private:
  explicit WriterLock(int fd) : fd_(fd) {}
  int fd_;
};

class PollingWatch : public SecretWatch {
 public:
  PollingWatch(DirectorySecretStore* store, std::string ns, std::string name,
               absl::Duration interval, std::function<void()> on_change)
      // The starting version is read here, before the caller goes on: a change made
      // right after Watch() returns must be reported.
      : thread_([=, on_change = std::move(on_change), last = store->VersionOf(ns, name)]() mutable {
          while (!stop_.WaitForNotificationWithTimeout(interval)) {
            std::string now = store->VersionOf(ns, name);
            if (now != last) {
              last = std::move(now);
              on_change();
            }
          }
        }) {}
  ~PollingWatch() override {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;  // last: starts after stop_ exists
};

}  // namespace

absl::StatusOr<std::unique_ptr<DirectorySecretStore>> DirectorySecretStore::Create(
    std::string root, absl::Duration watch_interval) {
  if (root.empty()) return absl::InvalidArgumentError("secret directory is empty: give a path");
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  // Nothing is created here: the first write makes the directories it needs, so a
  // process that only reads (or fails before writing) leaves no empty store behind.
  return std::unique_ptr<DirectorySecretStore>(new DirectorySecretStore(root, watch_interval));
}

std::string DirectorySecretStore::KeyPath(const std::string& root, absl::string_view ns, absl::string_view name,
                                          absl::string_view key) {
  return absl::StrCat(root, "/", ns, "/", name, "/", key);
}

absl::StatusOr<std::string> DirectorySecretStore::SecretDir(absl::string_view ns,
                                                            absl::string_view name) const {
  // Names become path components: only DNS names, so nothing escapes the root.
  RETURN_IF_ERROR(ValidateSecretNames(ns, name));
  return absl::StrCat(root_, "/", ns, "/", name);
}

absl::StatusOr<SecretData> ReadSecretDirectory(const std::string& dir, const std::string& where) {
  struct stat info;
  if (stat(dir.c_str(), &info) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(where, " does not exist"));
    return ErrnoError("cannot open secret", dir, errno);
  }
  std::string link = dir + "/" + kDataLink;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    absl::StatusOr<std::string> target = ReadLink(link);
    if (!target.ok()) {
      if (!absl::IsNotFound(target.status())) return target.status();
      // A plain directory. One with no keys at all is what a writer killed before its
      // first switch leaves behind: there is no secret yet.
      ASSIGN_OR_RETURN(SecretData plain, ReadKeys(dir, /*follow_links=*/true));
      if (plain.empty()) return absl::NotFoundError(absl::StrCat(where, " holds no keys"));
      return plain;
    }
    // Read every key from the version the link named, then check that the link still
    // names it. A writer removes a version only after moving the link away, so an
    // unchanged link means no key of this read came from a half-removed version.
    // The kubelet's ..data names a version directory beside it ("..<timestamp>"); a
    // link anywhere else (another directory, outside the secret) is not read.
    if (!absl::StartsWith(*target, "..") || *target == ".." || absl::StrContains(*target, '/')) {
      return absl::DataLossError(absl::StrCat(
          where, ": ..data points to \"", target->substr(0, 64),
          "\", not to a version directory beside it; the secret is damaged: write it again (or delete it)"));
    }
    absl::StatusOr<SecretData> data = ReadKeys(dir + "/" + *target, /*follow_links=*/false);
    absl::StatusOr<std::string> after = ReadLink(link);
    if (after.ok() && *after == *target) {
      if (absl::IsNotFound(data.status())) {
        return absl::DataLossError(absl::StrCat(
            where, ": ..data points to ", *target,
            ", which does not exist; the secret is damaged: write it again (or delete it)"));
      }
      return data;
    }
    if (attempt >= 3) absl::SleepFor(absl::Milliseconds(1));  // a writer is busy: let it finish
  }
  return absl::UnavailableError(
      absl::StrCat(where, " changed on every one of ", kReadAttempts, " reads; try again"));
}

absl::Status WriteSecretDirectory(const std::string& dir, const SecretData& data, bool only_if_absent) {
  RETURN_IF_ERROR(ValidateSecretData(data));
  RETURN_IF_ERROR(MakeDirs(dir));
  ASSIGN_OR_RETURN(WriterLock lock, WriterLock::Acquire(dir));
  if (only_if_absent) {
    // Under the writers' lock: no other writer can create it between this look and the write.
    absl::StatusOr<SecretData> existing = ReadSecretDirectory(dir, dir);
    if (!absl::IsNotFound(existing.status())) {
      if (!existing.ok()) return existing.status();
      return absl::AlreadyExistsError(absl::StrCat(dir, " already holds a secret"));
    }
  }

  // 1. The new version, complete and on disk before anything points at it.
  std::string version;
  for (int attempt = 0;; ++attempt) {
    version = VersionDirName(absl::Now());
    if (mkdir((dir + "/" + version).c_str(), 0700) == 0) break;
    if (errno != EEXIST || attempt == 10) return ErrnoError("cannot create", dir + "/" + version, errno);
  }
  std::string version_dir = dir + "/" + version;
  absl::Cleanup remove_version = [&] { RemoveTree(version_dir).IgnoreError(); };
  for (const auto& [key, value] : data) {
    RETURN_IF_ERROR(WriteFileSynced(version_dir + "/" + key, value));
  }
  RETURN_IF_ERROR(SyncDir(version_dir));

  // 2. The switch: one rename of a symlink over ..data.
  std::string temp_link = absl::StrCat(dir, "/..data_tmp.", RandomSuffix());
  if (symlink(version.c_str(), temp_link.c_str()) != 0) {
    return ErrnoError("cannot create link", temp_link, errno);
  }
  if (rename(temp_link.c_str(), (dir + "/" + kDataLink).c_str()) != 0) {
    int error = errno;
    unlink(temp_link.c_str());
    return ErrnoError("cannot switch ..data in", dir, error);
  }
  std::move(remove_version).Cancel();
  RETURN_IF_ERROR(SyncDir(dir));

  // 3. Tidy up: top-level key links, then versions and leftovers of killed writers.
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(dir));
  for (const auto& [key, value] : data) {
    std::string key_link = dir + "/" + key;
    std::string expected = absl::StrCat(kDataLink, "/", key);
    absl::StatusOr<std::string> current = ReadLink(key_link);
    if (current.ok() && *current == expected) continue;
    std::string temp = absl::StrCat(dir, "/..key_tmp.", RandomSuffix());
    if (symlink(expected.c_str(), temp.c_str()) != 0 ||
        rename(temp.c_str(), key_link.c_str()) != 0) {
      int error = errno;
      unlink(temp.c_str());
      return ErrnoError("cannot link key", key_link, error);
    }
  }
  for (const std::string& entry : entries) {
    std::string path = dir + "/" + entry;
    if (IsKeyName(entry)) {
      if (data.count(entry) == 0) RETURN_IF_ERROR(RemoveTree(path));  // a key that is gone
    } else if (entry != version && entry != kDataLink && entry != kLockFile) {
      RETURN_IF_ERROR(RemoveTree(path));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretData> DirectorySecretStore::Get(absl::string_view ns, absl::string_view name) {
  ASSIGN_OR_RETURN(std::string dir, SecretDir(ns, name));
  return ReadSecretDirectory(dir, absl::StrCat("secret ", ns, "/", name, " (", dir, ")"));
}

absl::Status DirectorySecretStore::Put(absl::string_view ns, absl::string_view name,
                                       const SecretData& data) {
  ASSIGN_OR_RETURN(std::string dir, SecretDir(ns, name));
  return WriteSecretDirectory(dir, data);
}

absl::Status DirectorySecretStore::Create(absl::string_view ns, absl::string_view name,
                                          const SecretData& data) {
  ASSIGN_OR_RETURN(std::string dir, SecretDir(ns, name));
  absl::Status status = WriteSecretDirectory(dir, data, /*only_if_absent=*/true);
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(absl::StrCat("secret ", ns, "/", name, " already exists"));
  }
  return status;
}

absl::Status DirectorySecretStore::Delete(absl::string_view ns, absl::string_view name) {
  ASSIGN_OR_RETURN(std::string dir, SecretDir(ns, name));
  // Move it aside in one rename, so readers see it whole or not at all.
  std::string doomed = absl::StrCat(root_, "/", ns, "/..deleted.", name, ".", RandomSuffix());
  if (rename(dir.c_str(), doomed.c_str()) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("secret ", ns, "/", name, " does not exist"));
    }
    return ErrnoError("cannot delete secret", dir, errno);
  }
  return RemoveTree(doomed);
}

absl::StatusOr<std::vector<std::string>> DirectorySecretStore::List(absl::string_view ns) {
  if (!IsDnsName(ns)) {
    return absl::InvalidArgumentError(absl::StrCat("namespace \"", ns.substr(0, 64), "\" is not valid"));
  }
  std::string ns_dir = absl::StrCat(root_, "/", ns);
  absl::StatusOr<std::vector<std::string>> entries = ListDir(ns_dir);
  if (absl::IsNotFound(entries.status())) return std::vector<std::string>{};
  if (!entries.ok()) return entries.status();
  std::vector<std::string> names;
  for (const std::string& entry : *entries) {
    struct stat info;
    if (IsPlainName(entry) && stat((ns_dir + "/" + entry).c_str(), &info) == 0 &&
        S_ISDIR(info.st_mode)) {
      names.push_back(entry);
    }
  }
  return names;
}

std::string DirectorySecretStore::VersionOf(absl::string_view ns, absl::string_view name) {
  absl::StatusOr<std::string> dir = SecretDir(ns, name);
  if (!dir.ok()) return "";
  absl::StatusOr<std::string> target = ReadLink(*dir + "/" + kDataLink);
  if (target.ok()) return *target;
  // A plain directory: its files' sizes and change times stand for the version.
  absl::StatusOr<std::vector<std::string>> entries = ListDir(*dir);
  if (!entries.ok()) return "";
  std::string version = "plain";
  for (const std::string& entry : *entries) {
    struct stat info;
    if (IsKeyName(entry) && stat((*dir + "/" + entry).c_str(), &info) == 0) {
      absl::StrAppend(&version, ":", entry, "/", info.st_size, "/", info.st_ctim.tv_sec, ".",
                      info.st_ctim.tv_nsec, "/", info.st_ino);
    }
  }
  return version;
}

std::unique_ptr<SecretWatch> DirectorySecretStore::Watch(absl::string_view ns,
                                                         absl::string_view name,
                                                         std::function<void()> on_change) {
  return std::make_unique<PollingWatch>(this, std::string(ns), std::string(name),
                                        watch_interval_, std::move(on_change));
}

}  // namespace relay::secrets
