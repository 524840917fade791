// Bootstrap tokens as an agent presents them (anything, before it is authenticated),
// against stored records that may be damaged. Input lines: the token, the cluster it
// asks for, and the stored record's value (kept under the token's hash). Properties:
// no crash; a token is redeemed only with the prefix, for the cluster its record
// names, while it has uses left and has not expired, and redeeming uses one up.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_support.h"
#include "state/local_state_store.h"
#include "tokens/bootstrap_tokens.h"
#include "tokens/identity_token.h"

namespace {

relay::state::LocalStateStore& Store() {
  static relay::state::LocalStateStore* const store = [] {
    relay::state::LocalStateOptions options;
    options.dir = relay::fuzz::ScratchDir();
    absl::StatusOr<std::unique_ptr<relay::state::LocalStateStore>> opened = relay::state::LocalStateStore::Open(options);
    if (!opened.ok()) std::abort();
    return opened->release();
  }();
  return *store;
}

// A number field of a record value (the last one, as the decoder reads it), or -1.
int64_t FieldIn(absl::string_view value, absl::string_view name) {
  int64_t result = -1;
  for (absl::string_view field : absl::StrSplit(value, ';')) {
    int64_t number = 0;
    if (absl::ConsumePrefix(&field, name) && absl::ConsumePrefix(&field, "=") && absl::SimpleAtoi(field, &number)) {
      result = number;
    }
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size), absl::MaxSplits('\n', 2));
  lines.resize(3);
  const std::string& token = lines[0];
  const std::string& cluster = lines[1];
  const std::string& value = lines[2];
  const absl::Time now = absl::FromUnixSeconds(1800000000);

  relay::state::StateStore& store = Store();
  const std::string key = absl::StrCat(relay::tokens::kBootstrapTokenKeyPrefix, relay::tokens::TokenHash(token));
  absl::StatusOr<int64_t> stored = store.CompareAndSetAndWait(key, value, 0);

  relay::tokens::BootstrapTokens tokens(&store, "gloo-mesh");
  bool issued = false;
  absl::Status redeemed = tokens.Redeem(token, cluster, now, [&] {
    issued = true;
    return absl::OkStatus();
  });
  if (redeemed.ok()) {
    FUZZ_CHECK(issued, "a redeemed token issued");
    FUZZ_CHECK(stored.ok(), "only a stored token is redeemed");
    FUZZ_CHECK(absl::StartsWith(token, relay::tokens::kBootstrapTokenPrefix), "only a bootstrap token is redeemed");
    FUZZ_CHECK(absl::StrContains(value, absl::StrCat("cluster=", cluster)), "only for the cluster its record names");
    const int64_t uses_before = FieldIn(value, "uses");
    FUZZ_CHECK(uses_before > 0, "only while it has uses left");
    FUZZ_CHECK(FieldIn(value, "expires") > absl::ToUnixSeconds(now), "only before it expires");
    absl::StatusOr<relay::state::Record> after = store.Get(key);
    FUZZ_CHECK(uses_before == 1 ? absl::IsNotFound(after.status()) : after.ok() && FieldIn(after->value, "uses") == uses_before - 1,
               "redeeming uses one up");
  } else {
    FUZZ_CHECK(!issued, "a refused token issues nothing");
  }
  tokens.List(now).IgnoreError();
  absl::StatusOr<relay::state::Record> left = store.Get(key);
  if (left.ok()) store.CompareAndSetAndWait(key, std::nullopt, left->revision).IgnoreError();
  return 0;
}
