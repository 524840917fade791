#include "tokens/identity_token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace relay::tokens {

absl::StatusOr<std::string> GenerateToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("the random generator failed while making a token");
  }
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::StatusOr<std::string> LoadToken(secrets::SecretStore& store, absl::string_view ns,
                                      absl::string_view name, absl::string_view key) {
  absl::StatusOr<secrets::SecretData> data = store.Get(ns, name);
  if (absl::IsNotFound(data.status())) {
    return absl::NotFoundError(absl::StrCat(
        "token secret ", ns, "/", name, " does not exist: copy it from the management "
        "cluster (relayctl register) or set glooAgent.relay.tokenSecret"));
  }
  if (!data.ok()) return data.status();
  ASSIGN_OR_RETURN(std::string token, secrets::GetKey(*data, ns, name, key));
  absl::string_view trimmed = absl::StripAsciiWhitespace(token);
  if (trimmed.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token secret ", ns, "/", name, " key \"", key, "\" is empty: put the identity token there"));
  }
  if (trimmed.size() > kMaxTokenBytes) {
    return absl::FailedPreconditionError(absl::StrCat("token secret ", ns, "/", name, " key \"",
                                                      key, "\" is longer than ", kMaxTokenBytes,
                                                      " bytes: is it the right secret?"));
  }
  return std::string(trimmed);
}

absl::Status CheckSharedTokenStrength(absl::string_view token, absl::string_view ns,
                                      absl::string_view name, absl::string_view key) {
  if (token.size() >= kMinSharedTokenChars) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "token secret ", ns, "/", name, " key \"", key, "\" holds a token of ", token.size(),
      " characters: the shared identity token must have at least ", kMinSharedTokenChars,
      " (32 random bytes, base64url), since anyone who holds it may register clusters. Replace "
      "it, e.g. with the output of `head -c 32 /dev/urandom | basenc --base64url | tr -d =`, or "
      "delete the secret and the server generates one (agents then need the new token: "
      "relayctl register)"));
}

bool TokensEqual(absl::string_view presented, absl::string_view expected) {
  unsigned char a[SHA256_DIGEST_LENGTH];
  unsigned char b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(expected.data()), expected.size(), b);
  bool same = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
  return same && !expected.empty();
}

std::string TokenHash(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

}  // namespace relay::tokens
