#ifndef RELAY_TOKENS_BOOTSTRAP_TOKENS_H_
#define RELAY_TOKENS_BOOTSTRAP_TOKENS_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "secrets/secret_store.h"

namespace relay::tokens {

// Every bootstrap token starts with this, so it is told apart from the shared token.
inline constexpr char kBootstrapTokenPrefix[] = "relay-bootstrap.";

inline constexpr char kBootstrapTokenSecret[] = "relay-bootstrap-tokens";

// What is kept of a bootstrap token: never the token itself, only its hash.
struct BootstrapTokenRecord {
  std::string hash;  // hex SHA-256 of the token
  std::string cluster;
  absl::Time expires;
  int uses_left = 0;
};

// Single- (or few-) use tokens bound to one cluster, with a TTL, kept as hashes in one
// secret (`relay-bootstrap-tokens`, key = hash). The management server owns that
// secret; this class serialises its own readers and writers.
class BootstrapTokens {
 public:
  BootstrapTokens(secrets::SecretStore* store, std::string ns)
      : store_(store), ns_(std::move(ns)) {}

  // Creates a token for `cluster` and returns it; only its hash is stored.
  absl::StatusOr<std::string> Create(absl::string_view cluster, absl::Duration ttl, int uses,
                                     absl::Time now);

  // Checks `token` for `cluster` and runs `issue` while holding the token; a use is
  // consumed only when `issue` returns OK, so a failed issuance does not burn it.
  // UNAUTHENTICATED for an unknown, expired or used-up token (one message for all, so
  // the answer tells an attacker nothing); PERMISSION_DENIED for another cluster.
  absl::Status Redeem(absl::string_view token, absl::string_view cluster, absl::Time now,
                      absl::FunctionRef<absl::Status()> issue);

  // The live records (expired ones are dropped on the next write).
  absl::StatusOr<std::vector<BootstrapTokenRecord>> List(absl::Time now);

 private:
  absl::StatusOr<secrets::SecretData> Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  secrets::SecretStore* const store_;
  const std::string ns_;
  absl::Mutex mu_;
};

}  // namespace relay::tokens

#endif  // RELAY_TOKENS_BOOTSTRAP_TOKENS_H_
