// Snapshot resource names: an operator's `relayctl snapshot push` sends them, the
// server checks them (ValidateResourceName) and every agent writes each as a file in
// its output directory (WriteSecretDirectory). Input: names, one per line. Properties:
// a name the server accepts is a plain file name that the agent's writer accepts too,
// and a snapshot of accepted names passes the check WriteSecretDirectory makes before
// it writes (ValidateSecretData). That such data is then written and read back exactly
// is the secrets_directory target's property; this target once wrote and read back
// every snapshot itself, which held it to ~450 executions a second (file system calls
// under ASan) for no property the other target does not check.

#include <cstdint>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "mgmt/cluster_registry.h"
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
  FUZZ_CHECK(relay::secrets::ValidateSecretData(snapshot).ok(),
             "a snapshot of accepted names is one the agent's writer takes");
  return 0;
}
