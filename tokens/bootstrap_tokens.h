#ifndef RELAY_TOKENS_BOOTSTRAP_TOKENS_H_
#define RELAY_TOKENS_BOOTSTRAP_TOKENS_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "state/state_store.h"

namespace relay::tokens {

// Every bootstrap token starts with this, so it is told apart from the shared token.
inline constexpr char kBootstrapTokenPrefix[] = "relay-bootstrap.";

// Where earlier versions kept the hashes (one secret, key = hash); read once and moved
// to the state store.
inline constexpr char kBootstrapTokenSecret[] = "relay-bootstrap-tokens";
// Each token's record in the state store: this prefix + its hash.
inline constexpr char kBootstrapTokenKeyPrefix[] = "bootstrap-tokens/";

// What is kept of a bootstrap token: never the token itself, only its hash.
struct BootstrapTokenRecord {
  std::string hash;  // hex SHA-256 of the token
  std::string cluster;
  absl::Time expires;
  int uses_left = 0;
};

// Single- (or few-) use tokens bound to one cluster, with a TTL, kept as hashes: one
// record per token in the state store ("bootstrap-tokens/<hash>"). A use is consumed
// with a compare-and-set, so it is consumed exactly once even when several servers
// race for it.
class BootstrapTokens {
 public:
  // `ns` names where records of earlier versions may still be (the secret
  // relay-bootstrap-tokens), which are moved on first use.
  BootstrapTokens(state::StateStore* state, std::string ns) : state_(state), ns_(std::move(ns)) {}

  // Creates a token for `cluster` and returns it; only its hash is stored.
  absl::StatusOr<std::string> Create(absl::string_view cluster, absl::Duration ttl, int uses,
                                     absl::Time now);

  // Checks `token` for `cluster` and runs `issue` while holding the token; a use is
  // consumed only when `issue` returns OK, so a failed issuance does not burn it.
  // UNAUTHENTICATED for an unknown, expired or used-up token (one message for all, so
  // the answer tells an attacker nothing); PERMISSION_DENIED for another cluster.
  // Blocks on the store: not for gRPC callback threads.
  absl::Status Redeem(absl::string_view token, absl::string_view cluster, absl::Time now,
                      absl::FunctionRef<absl::Status()> issue);

  // The live records.
  absl::StatusOr<std::vector<BootstrapTokenRecord>> List(absl::Time now);

  // Deletes the token whose hash starts with `hash_prefix` (at least 8 hex digits, as
  // List shows them): it can no longer be redeemed. NOT_FOUND when none matches,
  // INVALID_ARGUMENT when the prefix is too short or matches several. The cluster it
  // was bound to, on success.
  absl::StatusOr<std::string> Revoke(absl::string_view hash_prefix);

 private:
  // Moves records of earlier versions into the state store, once.
  absl::Status MigrateOnce();

  state::StateStore* const state_;
  const std::string ns_;
  absl::Mutex migrate_mu_;
  bool migrated_ ABSL_GUARDED_BY(migrate_mu_) = false;
};

}  // namespace relay::tokens

#endif  // RELAY_TOKENS_BOOTSTRAP_TOKENS_H_
