#ifndef RELAY_PKI_SSL_TYPES_H_
#define RELAY_PKI_SSL_TYPES_H_

// One owning smart pointer for OpenSSL 3 and BoringSSL objects: bssl::UniquePtr under
// BoringSSL, std::unique_ptr with a deleter specialisation under OpenSSL.

#include <memory>
#include <string>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace relay::pki {

#if defined(OPENSSL_IS_BORINGSSL)

template <typename T>
using UniquePtr = bssl::UniquePtr<T>;

#else

template <typename T>
struct SslDeleter;

#define RELAY_SSL_DELETER(type, free_fn) \
  template <>                            \
  struct SslDeleter<type> {              \
    void operator()(type* p) const { free_fn(p); } \
  }

// ASN1_INTEGER, ASN1_TIME, ASN1_OCTET_STRING, ASN1_BIT_STRING... are all ASN1_STRING.
RELAY_SSL_DELETER(ASN1_STRING, ASN1_STRING_free);
RELAY_SSL_DELETER(ASN1_OBJECT, ASN1_OBJECT_free);
RELAY_SSL_DELETER(AUTHORITY_KEYID, AUTHORITY_KEYID_free);
RELAY_SSL_DELETER(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free);
RELAY_SSL_DELETER(BIGNUM, BN_free);
RELAY_SSL_DELETER(BIO, BIO_free_all);
RELAY_SSL_DELETER(EVP_MD_CTX, EVP_MD_CTX_free);
RELAY_SSL_DELETER(EVP_PKEY, EVP_PKEY_free);
RELAY_SSL_DELETER(EVP_PKEY_CTX, EVP_PKEY_CTX_free);
RELAY_SSL_DELETER(GENERAL_NAME, GENERAL_NAME_free);
RELAY_SSL_DELETER(X509, X509_free);
RELAY_SSL_DELETER(X509_ALGOR, X509_ALGOR_free);
RELAY_SSL_DELETER(X509_ATTRIBUTE, X509_ATTRIBUTE_free);
RELAY_SSL_DELETER(X509_EXTENSION, X509_EXTENSION_free);
RELAY_SSL_DELETER(X509_NAME, X509_NAME_free);
RELAY_SSL_DELETER(X509_REQ, X509_REQ_free);
RELAY_SSL_DELETER(X509_STORE, X509_STORE_free);
RELAY_SSL_DELETER(X509_STORE_CTX, X509_STORE_CTX_free);

// Stacks own their elements, as BoringSSL's deleters do.
template <>
struct SslDeleter<STACK_OF(X509)> {
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
};
template <>
struct SslDeleter<STACK_OF(X509_EXTENSION)> {
  void operator()(STACK_OF(X509_EXTENSION) * p) const {
    sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
  }
};
template <>
struct SslDeleter<GENERAL_NAMES> {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
template <>
struct SslDeleter<EXTENDED_KEY_USAGE> {
  void operator()(EXTENDED_KEY_USAGE* p) const {
    sk_ASN1_OBJECT_pop_free(p, ASN1_OBJECT_free);
  }
};

#undef RELAY_SSL_DELETER

template <typename T>
using UniquePtr = std::unique_ptr<T, SslDeleter<T>>;

#endif

// Memory the TLS library allocated for us (i2d_* output, BN_bn2hex, PEM_read_bio's
// blocks), freed with OPENSSL_free.
struct OpensslFree {
  void operator()(void* p) const { OPENSSL_free(p); }
};
template <typename T>
using OpensslPtr = std::unique_ptr<T, OpensslFree>;

// `object` encoded by `i2d` (i2d_X509, i2d_X509_PUBKEY, ...) into `out`; false when it
// cannot be encoded.
template <typename I2d, typename T>
bool EncodeDer(I2d i2d, const T* object, std::string* out) {
  unsigned char* der = nullptr;
  int length = i2d(const_cast<T*>(object), &der);
  OpensslPtr<unsigned char> owned(der);
  if (length <= 0 || der == nullptr) return false;
  out->assign(reinterpret_cast<const char*>(der), static_cast<size_t>(length));
  return true;
}

}  // namespace relay::pki

#endif  // RELAY_PKI_SSL_TYPES_H_
