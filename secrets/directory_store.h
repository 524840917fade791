#ifndef RELAY_SECRETS_DIRECTORY_STORE_H_
#define RELAY_SECRETS_DIRECTORY_STORE_H_

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "secrets/secret_store.h"

namespace relay::secrets {

// Secrets as directories, laid out as the kubelet lays out a mounted secret volume
// (DESIGN.md "Secrets"), so the same code reads a real mounted Kubernetes secret:
//
//   <root>/<ns>/<name>/..2026_11_27_10_00_00.123456789/<key>   files 0600, dir 0700
//   <root>/<ns>/<name>/..data -> ..2026_11_27_10_00_00.123456789
//   <root>/<ns>/<name>/<key> -> ..data/<key>
//
// A secret directory of plain files (no ..data), as made with mkdir and cp, reads the
// same. A write makes and fsyncs a new version directory, then renames a symlink over
// ..data: readers see the old version or the new one, never a mix, and a writer killed
// at any point leaves the previous version whole. Writers (threads or processes)
// serialise on an flock in the secret directory.
class DirectorySecretStore : public SecretStore {
 public:
  // `watch_interval` is how often watches look for a new version (they poll, which also
  // works on volumes where inotify does not, as kubelet-updated ones). `root` need not
  // exist: the first write creates what it needs (directories 0700).
  static absl::StatusOr<std::unique_ptr<DirectorySecretStore>> Create(
      std::string root, absl::Duration watch_interval = absl::Milliseconds(200));

  absl::StatusOr<SecretData> Get(absl::string_view ns, absl::string_view name) override;
  absl::Status Put(absl::string_view ns, absl::string_view name, const SecretData& data) override;
  absl::Status Create(absl::string_view ns, absl::string_view name, const SecretData& data) override;
  absl::Status Delete(absl::string_view ns, absl::string_view name) override;
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override;
  std::unique_ptr<SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                     std::function<void()> on_change) override;

  const std::string& root() const { return root_; }

  // Where key `key` of secret `ns/name` is read from in a store rooted at `root` (a link
  // into the current version): what a file watcher, such as gRPC's, is pointed at.
  static std::string KeyPath(const std::string& root, absl::string_view ns, absl::string_view name,
                             absl::string_view key);

  // A string that changes whenever the secret changes ("" when it does not exist).
  std::string VersionOf(absl::string_view ns, absl::string_view name);

 private:
  DirectorySecretStore(std::string root, absl::Duration watch_interval)
      : root_(std::move(root)), watch_interval_(watch_interval) {}

  absl::StatusOr<std::string> SecretDir(absl::string_view ns, absl::string_view name) const;

  const std::string root_;
  const absl::Duration watch_interval_;
};

// The same layout for any directory (the agent writes snapshots this way): read every
// key of the current version (`where` labels errors), or write a new version.
absl::StatusOr<SecretData> ReadSecretDirectory(const std::string& dir, const std::string& where);
// With `only_if_absent`, ALREADY_EXISTS (writing nothing) when the directory already
// holds a secret.
absl::Status WriteSecretDirectory(const std::string& dir, const SecretData& data, bool only_if_absent = false);

}  // namespace relay::secrets

#endif  // RELAY_SECRETS_DIRECTORY_STORE_H_
