// Helm values files (--values), parsed with yaml-cpp. Properties: no crash on any
// document, and values that parse keep the ranges the rest of relay relies on.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "config/values.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<relay::config::MgmtServerValues> server = relay::config::ParseMgmtServerValues(yaml, "fuzz.yaml");
  absl::StatusOr<relay::config::AgentValues> agent = relay::config::ParseAgentValues(yaml, "fuzz.yaml");
  if (agent.ok()) {
    double ratio = agent->client_tls_secret_rotation_grace_period_ratio;
    FUZZ_CHECK(ratio > 0 && ratio < 1, "the rotation grace ratio is a share of a lifetime");
  }
  return 0;
}
