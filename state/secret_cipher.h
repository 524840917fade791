#ifndef RELAY_STATE_SECRET_CIPHER_H_
#define RELAY_STATE_SECRET_CIPHER_H_

// Encryption of secrets at rest in a shared store (etcd), as Kubernetes encrypts Secrets
// in etcd with its aesgcm provider: AES-256-GCM under a 32-byte key read from a file,
// a random 96-bit nonce per write, and the storage key as additional data, so a value
// copied to another key does not decrypt. A sealed value reads
//
//   relay:enc:aesgcm:v1:<key id>:<nonce 12 bytes><ciphertext><tag 16 bytes>
//
// where <key id> is the first 8 hex digits of SHA-256 of the key: a value sealed under
// another key is named as such instead of failing as "damaged". Random nonces keep a key
// safe for 2^32 writes (NIST SP 800-38D, 8.3); relay writes a secret a few times a day.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace relay::state {

class SecretCipher {
 public:
  // The key file holds the key as 32 raw bytes or as its base64 (what
  // `head -c 32 /dev/urandom | base64` writes; a trailing newline is fine).
  static absl::StatusOr<SecretCipher> FromKeyFile(const std::string& path);
  static absl::StatusOr<SecretCipher> FromKey(absl::string_view key);

  const std::string& key_id() const { return key_id_; }

  absl::StatusOr<std::string> Seal(absl::string_view plaintext, absl::string_view associated_data) const;
  // FAILED_PRECONDITION for a value sealed under another key or not sealed at all;
  // DATA_LOSS for one that does not authenticate. Messages never include the data.
  absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view associated_data) const;

  // Whether `value` is a sealed value (of any key).
  static bool IsSealed(absl::string_view value);

 private:
  SecretCipher(std::string key, std::string key_id) : key_(std::move(key)), key_id_(std::move(key_id)) {}

  std::string key_;
  std::string key_id_;
};

}  // namespace relay::state

#endif  // RELAY_STATE_SECRET_CIPHER_H_
