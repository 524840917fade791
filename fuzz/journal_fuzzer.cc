// The state journal as found on disk at start-up (relay-registry.<ns>.log: damaged,
// torn, older-format or hostile), replayed by LocalStateStore::Open, and the records it
// yields decoded by the cluster registry and the bootstrap tokens. Properties: no crash;
// a journal that opens holds only valid keys, and opening it again after the
// compaction that Open does gives the same records.

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/clock.h"
#include "fuzz/fuzz_support.h"
#include "mgmt/cluster_registry.h"
#include "state/local_state_store.h"
#include "tokens/bootstrap_tokens.h"

namespace {

constexpr char kNamespace[] = "gloo-mesh";

bool WriteWhole(const std::string& path, const uint8_t* data, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = write(fd, data, size) == static_cast<ssize_t>(size);
  close(fd);
  return ok;
}

std::map<std::string, std::string> Values(relay::state::StateStore& store) {
  std::map<std::string, std::string> values;
  absl::StatusOr<std::map<std::string, relay::state::Record>> records = store.List("");
  FUZZ_CHECK(records.ok(), "an open store lists its records");
  for (const auto& [key, record] : *records) values[key] = record.value;
  return values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = relay::fuzz::ScratchDir();
  relay::fuzz::ClearDir(dir);
  if (!WriteWhole(dir + "/relay-registry." + kNamespace + ".log", data, size)) std::abort();

  relay::state::LocalStateOptions options;
  options.dir = dir;
  options.ns = kNamespace;
  std::map<std::string, std::string> first;
  {
    absl::StatusOr<std::unique_ptr<relay::state::LocalStateStore>> store = relay::state::LocalStateStore::Open(options);
    if (!store.ok()) return 0;
    first = Values(**store);
    for (const auto& [key, value] : first) {
      FUZZ_CHECK(relay::state::ValidateKey(key).ok(), "every key replayed is a valid key");
    }
    relay::mgmt::ClusterRegistry::Load(store->get(), kNamespace).IgnoreError();
    relay::tokens::BootstrapTokens tokens(store->get(), kNamespace);
    tokens.List(absl::Now()).IgnoreError();
  }
  absl::StatusOr<std::unique_ptr<relay::state::LocalStateStore>> again = relay::state::LocalStateStore::Open(options);
  FUZZ_CHECK(again.ok(), "a journal that opened once opens again after its compaction");
  FUZZ_CHECK(Values(**again) == first, "compaction keeps every record");
  return 0;
}
