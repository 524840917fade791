#include "pki/keys.h"

#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

#include "absl/strings/str_cat.h"
#include "pki/ssl_error.h"

namespace relay::pki {
namespace {

// The curve of an EC key. OpenSSL 3 deprecates EVP_PKEY_get0_EC_KEY and BoringSSL lacks
// EVP_PKEY_get_group_name, so this is the one place that differs.
int EcCurveNid(const EVP_PKEY* key) {
#if defined(OPENSSL_IS_BORINGSSL)
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
  if (ec == nullptr) return NID_undef;
  return EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
#else
  char name[64];
  size_t length = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof(name), &length) != 1) return NID_undef;
  return OBJ_sn2nid(name);
#endif
}

}  // namespace

absl::StatusOr<KeyType> ParseKeyType(absl::string_view name) {
  if (name == "ecdsa-p256" || name.empty()) return KeyType::kEcdsaP256;
  if (name == "ecdsa-p384") return KeyType::kEcdsaP384;
  if (name == "rsa-2048") return KeyType::kRsa2048;
  if (name == "rsa-3072") return KeyType::kRsa3072;
  if (name == "rsa-4096") return KeyType::kRsa4096;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown key type \"", name,
      "\": use one of ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096"));
}

std::string KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcdsaP256: return "ecdsa-p256";
    case KeyType::kEcdsaP384: return "ecdsa-p384";
    case KeyType::kRsa2048: return "rsa-2048";
    case KeyType::kRsa3072: return "rsa-3072";
    case KeyType::kRsa4096: return "rsa-4096";
  }
  return "unknown";
}

absl::StatusOr<UniquePtr<EVP_PKEY>> GenerateKey(KeyType type) {
  bool ec = type == KeyType::kEcdsaP256 || type == KeyType::kEcdsaP384;
  UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(ec ? EVP_PKEY_EC : EVP_PKEY_RSA, nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) {
    return SslError(absl::StatusCode::kInternal, "starting key generation");
  }
  int ok = 0;
  switch (type) {
    case KeyType::kEcdsaP256:
      ok = EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1);
      break;
    case KeyType::kEcdsaP384:
      ok = EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_secp384r1);
      break;
    case KeyType::kRsa2048: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 2048); break;
    case KeyType::kRsa3072: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 3072); break;
    case KeyType::kRsa4096: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 4096); break;
  }
  EVP_PKEY* raw = nullptr;
  if (ok != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return SslError(absl::StatusCode::kInternal,
                    absl::StrCat("generating a ", KeyTypeName(type), " key"));
  }
  return UniquePtr<EVP_PKEY>(raw);
}

absl::StatusOr<KeyType> CheckKeyPolicy(const EVP_PKEY* key) {
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      int nid = EcCurveNid(key);
      if (nid == NID_X9_62_prime256v1) return KeyType::kEcdsaP256;
      if (nid == NID_secp384r1) return KeyType::kEcdsaP384;
      ClearSslErrors();
      return absl::InvalidArgumentError(absl::StrCat(
          "EC key on curve ", nid == NID_undef ? "unknown" : OBJ_nid2sn(nid),
          " is not accepted: use P-256 (prime256v1) or P-384"));
    }
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_bits(key);
      if (bits == 2048) return KeyType::kRsa2048;
      if (bits == 3072) return KeyType::kRsa3072;
      if (bits == 4096) return KeyType::kRsa4096;
      return absl::InvalidArgumentError(absl::StrCat(
          "RSA key of ", bits, " bits is not accepted: use 2048, 3072 or 4096 bits"));
    }
    default:
      return absl::InvalidArgumentError(
          "key type is not accepted: use ECDSA P-256 (default), P-384 or RSA 2048-4096");
  }
}

absl::Status CheckKeyMatchesCertificate(const X509* cert, const EVP_PKEY* key) {
  if (X509_check_private_key(const_cast<X509*>(cert), const_cast<EVP_PKEY*>(key)) != 1) {
    ClearSslErrors();
    return absl::InvalidArgumentError(
        "private key does not match the certificate's public key (were tls.crt and tls.key "
        "taken from different secrets?)");
  }
  return absl::OkStatus();
}

}  // namespace relay::pki
