#include "state/secret_cipher.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace relay::state {
namespace {

constexpr absl::string_view kMagic = "relay:enc:aesgcm:v1:";
constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kKeyIdChars = 8;

struct ContextFree {
  void operator()(EVP_CIPHER_CTX* context) const { EVP_CIPHER_CTX_free(context); }
};
using Context = std::unique_ptr<EVP_CIPHER_CTX, ContextFree>;

const unsigned char* Bytes(absl::string_view text) { return reinterpret_cast<const unsigned char*>(text.data()); }

}  // namespace

absl::StatusOr<SecretCipher> SecretCipher::FromKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the state encryption key file ", path,
                                            ": create it with `head -c 32 /dev/urandom | base64 > FILE`"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string content = buffer.str();
  if (content.size() == kKeyBytes) return FromKey(content);
  std::string decoded;
  if (absl::Base64Unescape(absl::StripAsciiWhitespace(content), &decoded) && decoded.size() == kKeyBytes) {
    return FromKey(decoded);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the state encryption key file ", path, " holds neither 32 bytes nor the base64 of 32 bytes (",
      content.size(), " bytes): create it with `head -c 32 /dev/urandom | base64 > FILE`"));
}

absl::StatusOr<SecretCipher> SecretCipher::FromKey(absl::string_view key) {
  if (key.size() != kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("an AES-256 key has 32 bytes, not ", key.size()));
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(Bytes(key), key.size(), digest);
  std::string id = absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof(digest)));
  return SecretCipher(std::string(key), id.substr(0, kKeyIdChars));
}

bool SecretCipher::IsSealed(absl::string_view value) { return absl::StartsWith(value, kMagic); }

absl::StatusOr<std::string> SecretCipher::Seal(absl::string_view plaintext, absl::string_view associated_data) const {
  std::string header = absl::StrCat(kMagic, key_id_, ":");
  std::string sealed(header.size() + kNonceBytes + plaintext.size() + kTagBytes, '\0');
  std::copy(header.begin(), header.end(), sealed.begin());
  auto* nonce = reinterpret_cast<unsigned char*>(&sealed[header.size()]);
  auto* out = nonce + kNonceBytes;
  Context context(EVP_CIPHER_CTX_new());
  int written = 0, final_written = 0;
  if (!context || RAND_bytes(nonce, kNonceBytes) != 1 ||
      EVP_EncryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(context.get(), nullptr, nullptr, Bytes(key_), nonce) != 1 ||
      EVP_EncryptUpdate(context.get(), nullptr, &written, Bytes(associated_data),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_EncryptUpdate(context.get(), out, &written, Bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(context.get(), out + written, &final_written) != 1 ||
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, out + plaintext.size()) != 1) {
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  return sealed;
}

absl::StatusOr<std::string> SecretCipher::Open(absl::string_view sealed, absl::string_view associated_data) const {
  absl::string_view rest = sealed;
  if (!absl::ConsumePrefix(&rest, kMagic)) {
    return absl::FailedPreconditionError(
        "the value is not encrypted, but a state encryption key is configured: it was written without "
        "--state_encryption_key_file; rewrite it with a server that has the key");
  }
  size_t colon = rest.find(':');
  if (colon == absl::string_view::npos) return absl::DataLossError("the encrypted value has no key id");
  absl::string_view id = rest.substr(0, colon);
  rest.remove_prefix(colon + 1);
  if (id != key_id_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the value was encrypted under key ", id, ", but --state_encryption_key_file holds key ", key_id_,
        ": give every replica the same key file"));
  }
  if (rest.size() < kNonceBytes + kTagBytes) return absl::DataLossError("the encrypted value is truncated");
  const unsigned char* nonce = Bytes(rest);
  absl::string_view ciphertext = rest.substr(kNonceBytes, rest.size() - kNonceBytes - kTagBytes);
  absl::string_view tag = rest.substr(rest.size() - kTagBytes);
  std::string plaintext(ciphertext.size(), '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  Context context(EVP_CIPHER_CTX_new());
  int written = 0, final_written = 0;
  std::string tag_copy(tag);
  bool ok = context && EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_DecryptInit_ex(context.get(), nullptr, nullptr, Bytes(key_), nonce) == 1 &&
            EVP_DecryptUpdate(context.get(), nullptr, &written, Bytes(associated_data),
                              static_cast<int>(associated_data.size())) == 1 &&
            EVP_DecryptUpdate(context.get(), out, &written, Bytes(ciphertext), static_cast<int>(ciphertext.size())) ==
                1 &&
            EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag_copy.data()) == 1 &&
            EVP_DecryptFinal_ex(context.get(), out + written, &final_written) == 1;
  if (!ok) {
    return absl::DataLossError(
        "the encrypted value does not authenticate: it was altered, or moved from another key");
  }
  return plaintext;
}

}  // namespace relay::state
