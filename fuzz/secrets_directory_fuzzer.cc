// The secrets directory reader (secrets/directory_store.cc) on trees an operator, a
// kubelet or an attacker with write access to a volume could leave. The first byte
// picks the property:
//   even: the rest is "key\tvalue" lines; data the store accepts is written and reads
//         back exactly (nothing lost, nothing added);
//   odd:  the rest builds a tree, one entry per line: "f PATH\tCONTENT" (file),
//         "l PATH\tTARGET" (symlink), "d PATH" (directory), "p PATH" (FIFO); reading
//         it never blocks, never crashes, and never returns a file from outside the
//         secret directory through a ..data link.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "secrets/directory_store.h"
#include "secrets/secret_store.h"

namespace {

constexpr char kCanary[] = "relay-fuzz-canary: outside the secret directory";

bool SafeRelativePath(absl::string_view path) {
  if (path.empty() || path[0] == '/' || path.size() > 200) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == ".." || part.find('\0') != absl::string_view::npos) return false;
  }
  return true;
}

bool InsideDirectory(const std::string& parent, const std::string& dir) {
  char resolved_parent[PATH_MAX], resolved_dir[PATH_MAX];
  if (realpath(parent.c_str(), resolved_parent) == nullptr || realpath(dir.c_str(), resolved_dir) == nullptr) {
    return false;
  }
  const std::string inside(resolved_parent), root(resolved_dir);
  return inside == root || inside.rfind(root + "/", 0) == 0;
}

// Writes the tree's own files: never through a FIFO (O_NONBLOCK: no reader, ENXIO
// instead of a hang) or a link.
void WriteFile(const std::string& path, absl::string_view content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0) return;
  if (write(fd, content.data(), content.size()) < 0) {
  }
  close(fd);
}

void RoundTrip(absl::string_view input, const std::string& dir) {
  relay::secrets::SecretData data;
  for (absl::string_view line : absl::StrSplit(input, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    data[kv.first] = kv.second;
  }
  if (data.empty() || !relay::secrets::ValidateSecretData(data).ok()) return;
  absl::Status written = relay::secrets::WriteSecretDirectory(dir, data);
  if (!written.ok()) return;  // refusing is allowed; losing is not
  absl::StatusOr<relay::secrets::SecretData> read = relay::secrets::ReadSecretDirectory(dir, "fuzzed");
  FUZZ_CHECK(read.ok(), "a secret written reads back");
  FUZZ_CHECK(*read == data, "a secret reads back exactly as written");
}

void HostileTree(absl::string_view input, const std::string& scratch, const std::string& dir) {
  mkdir((scratch + "/outside").c_str(), 0700);
  WriteFile(scratch + "/outside/canary", kCanary);
  mkdir(dir.c_str(), 0700);
  int entries = 0;
  for (absl::string_view line : absl::StrSplit(input, '\n', absl::SkipEmpty())) {
    if (line.size() < 3 || line[1] != ' ' || ++entries > 64) continue;
    std::pair<std::string, std::string> spec = absl::StrSplit(line.substr(2), absl::MaxSplits('\t', 1));
    if (!SafeRelativePath(spec.first)) continue;
    const std::string path = dir + "/" + spec.first;
    // Nothing is made through a linked directory: the tree is built inside `dir` only
    // (what it links to is the reader's problem, not the builder's).
    if (!InsideDirectory(path.substr(0, path.rfind('/')), dir)) continue;
    switch (line[0]) {
      case 'f': WriteFile(path, spec.second); break;
      case 'l': symlink(spec.second.c_str(), path.c_str()); break;
      case 'd': mkdir(path.c_str(), 0700); break;
      case 'p': mkfifo(path.c_str(), 0600); break;
      default: break;
    }
  }
  absl::StatusOr<relay::secrets::SecretData> read = relay::secrets::ReadSecretDirectory(dir, "fuzzed");
  if (!read.ok()) return;
  std::string data_link(4096, '\0');
  bool kubelet_layout = readlink((dir + "/..data").c_str(), data_link.data(), data_link.size()) > 0;
  for (const auto& [key, value] : *read) {
    FUZZ_CHECK(!key.empty() && key != "." && key.rfind("..", 0) != 0 && key.find('/') == std::string::npos,
               "keys are file names, none of the kubelet's own \"..\" entries");
    if (kubelet_layout) FUZZ_CHECK(value != kCanary, "..data never leads outside the secret directory");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string& scratch = relay::fuzz::ScratchDir();
  relay::fuzz::ClearDir(scratch);
  absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string dir = scratch + "/secret";
  if (data[0] % 2 == 0) {
    RoundTrip(input, dir);
  } else {
    HostileTree(input, scratch, dir);
  }
  return 0;
}
