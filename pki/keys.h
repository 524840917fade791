#ifndef RELAY_PKI_KEYS_H_
#define RELAY_PKI_KEYS_H_

#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pki/ssl_types.h"

namespace relay::pki {

enum class KeyType { kEcdsaP256, kEcdsaP384, kRsa2048, kRsa3072, kRsa4096 };

// "ecdsa-p256" (default), "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096".
absl::StatusOr<KeyType> ParseKeyType(absl::string_view name);
std::string KeyTypeName(KeyType type);

absl::StatusOr<UniquePtr<EVP_PKEY>> GenerateKey(KeyType type = KeyType::kEcdsaP256);

// Describes `key` ("ECDSA P-256", "RSA 2048") and checks it against the policy for
// keys that relay accepts and signs for: ECDSA P-256 or P-384, or RSA 2048 to 4096
// bits. Anything else is INVALID_ARGUMENT with the reason.
absl::StatusOr<KeyType> CheckKeyPolicy(const EVP_PKEY* key);

// OK when `key` is the private key of `cert`'s public key.
absl::Status CheckKeyMatchesCertificate(const X509* cert, const EVP_PKEY* key);

}  // namespace relay::pki

#endif  // RELAY_PKI_KEYS_H_
