// Snapshot resource names: an operator's `relayctl snapshot push` sends them, the
// server checks them (ValidateResourceName) and every agent writes each as a file in
// its output directory. Input: names, one per line. Properties: a name the server
// accepts is a plain file name that the agent's writer accepts too, and a snapshot of
// accepted names is written and read back exactly, inside the output directory.

#include <sys/stat.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "mgmt/cluster_registry.h"
#include "secrets/directory_store.h"
#include "secrets/secret_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  relay::secrets::SecretData snapshot;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    std::string name(line);
    if (!relay::mgmt::ValidateResourceName(name).ok()) continue;
    FUZZ_CHECK(name.find('/') == std::string::npos && name.find('\0') == std::string::npos,
               "an accepted name has no path separator or NUL");
    FUZZ_CHECK(name != "." && name != ".." && name[0] != '.', "an accepted name is not a dot file");
    FUZZ_CHECK(relay::secrets::ValidateSecretKey(name).ok(), "the agent can write every name the server accepts");
    if (snapshot.size() < relay::secrets::kMaxSecretKeys) snapshot[name] = "content of " + name;
  }
  if (snapshot.empty()) return 0;

  const std::string& scratch = relay::fuzz::ScratchDir();
  relay::fuzz::ClearDir(scratch);
  const std::string output_dir = scratch + "/output";
  absl::Status written = relay::secrets::WriteSecretDirectory(output_dir, snapshot);
  FUZZ_CHECK(written.ok(), "a snapshot of accepted names is written");
  absl::StatusOr<relay::secrets::SecretData> read = relay::secrets::ReadSecretDirectory(output_dir, "output");
  FUZZ_CHECK(read.ok() && *read == snapshot, "a written snapshot reads back the same");
  struct stat info;
  FUZZ_CHECK(stat((scratch + "/output").c_str(), &info) == 0, "written where asked");
  return 0;
}
