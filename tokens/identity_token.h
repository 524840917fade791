#ifndef RELAY_TOKENS_IDENTITY_TOKEN_H_
#define RELAY_TOKENS_IDENTITY_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "secrets/secret_store.h"

namespace relay::tokens {

// Upper bound on a token read from a secret or a request.
inline constexpr size_t kMaxTokenBytes = 1024;

// 32 random bytes, base64url without padding (43 characters).
absl::StatusOr<std::string> GenerateToken();

// The shortest shared token the server accepts: 43 characters, the base64url length of
// 32 random bytes (what GenerateToken makes). Anyone holding the shared token may
// register clusters, so a short one is refused at start-up rather than guessed later.
inline constexpr size_t kMinSharedTokenChars = 43;

// OK when `token` (read from `key` of secret `ns/name`) is long enough; otherwise
// FAILED_PRECONDITION naming the secret and how to replace it, never the value.
absl::Status CheckSharedTokenStrength(absl::string_view token, absl::string_view ns,
                                      absl::string_view name, absl::string_view key);

// Reads the shared identity token from `key` of secret `ns/name`. Surrounding
// whitespace is dropped (a trailing newline from `echo` is common); an empty token or a
// missing key is an error that names the secret and key, never the value.
absl::StatusOr<std::string> LoadToken(secrets::SecretStore& store, absl::string_view ns,
                                      absl::string_view name, absl::string_view key);

// Constant-time equality: time does not depend on where the tokens differ, nor on
// their lengths (both are hashed first). An empty token never matches.
bool TokensEqual(absl::string_view presented, absl::string_view expected);

// Hex SHA-256, the form in which tokens are stored when only a hash is kept.
std::string TokenHash(absl::string_view token);

}  // namespace relay::tokens

#endif  // RELAY_TOKENS_IDENTITY_TOKEN_H_
