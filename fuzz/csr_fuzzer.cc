// Differential: the CSR bytes an agent sends, read by the server's own DER fast path
// (pki/der.cc SplitCsr, behind VerifyCsrDer) and by OpenSSL's d2i_X509_REQ. They must
// agree, because the fast path decides what gets signed:
//  - whatever the fast path splits, OpenSSL parses too, to the same subject, key,
//    extensions and signature;
//  - a canonical DER request that OpenSSL parses, the fast path splits, unless it is one
//    the fast path refuses on purpose (RefusedOnPurpose);
//  - a request VerifyCsrDer accepts has a signature OpenSSL verifies with the same key,
//    and exactly the one DNS name the fast path returned.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "pki/csr.h"
#include "pki/der.h"
#include "pki/ssl_error.h"
#include "pki/ssl_types.h"

namespace {

using relay::pki::UniquePtr;

using relay::fuzz::Der;

// The DNS names of the subjectAltName OpenSSL finds in the request's extensions.
std::vector<std::string> OpenSslDnsNames(X509_REQ* request) {
  std::vector<std::string> names;
  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request);
  if (extensions == nullptr) return names;
  auto* general_names = static_cast<GENERAL_NAMES*>(X509V3_get_d2i(extensions, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; general_names != nullptr && i < sk_GENERAL_NAME_num(general_names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(general_names, i);
    if (name->type != GEN_DNS) continue;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName)),
                       static_cast<size_t>(ASN1_STRING_length(name->d.dNSName)));
  }
  GENERAL_NAMES_free(general_names);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  return names;
}

// The request encoded again from what OpenSSL decoded. Not i2d_X509_REQ: that writes
// back the certificationRequestInfo's bytes as received (OpenSSL keeps them to verify
// the signature), so a BER-only form such as a primitive [0] would pass for DER. The
// attributes are encoded afresh here; the name and key are encoded as OpenSSL would.
std::string Reencoded(X509_REQ* request) {
  using relay::pki::internal::DerElement;
  constexpr unsigned char kSequence = 0x30, kInteger = 0x02, kAttributes = 0xa0;
  const long version = X509_REQ_get_version(request);
  if (version < 0 || version > 127) return "";
  std::string info = DerElement(kInteger, std::string(1, static_cast<char>(version)));
  info += Der(i2d_X509_NAME, X509_REQ_get_subject_name(request));
  info += Der(i2d_X509_PUBKEY, X509_REQ_get_X509_PUBKEY(request));
  std::vector<std::string> attributes;
  for (int i = 0; i < X509_REQ_get_attr_count(request); ++i) {
    attributes.push_back(Der(i2d_X509_ATTRIBUTE, X509_REQ_get_attr(request, i)));
  }
  std::sort(attributes.begin(), attributes.end());  // DER orders a SET OF by encoding
  std::string attribute_set;
  for (const std::string& attribute : attributes) attribute_set += attribute;
  info += DerElement(kAttributes, attribute_set);
  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* algorithm = nullptr;
  X509_REQ_get0_signature(request, &signature, &algorithm);
  std::string outer = DerElement(kSequence, info);
  outer += Der(i2d_X509_ALGOR, algorithm);
  outer += Der(i2d_ASN1_BIT_STRING, signature);
  return DerElement(kSequence, outer);
}

// The unused-bits count of the request's subjectPublicKey BIT STRING (its first content
// byte), read from OpenSSL's encoding of the key info; -1 when unreadable.
int UnusedKeyBits(X509_REQ* request) {
  const std::string der = Der(i2d_X509_PUBKEY, X509_REQ_get_X509_PUBKEY(request));
  const unsigned char* cursor = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = cursor + der.size();
  long length = 0;
  int tag = 0, tag_class = 0;
  if (ASN1_get_object(&cursor, &length, &tag, &tag_class, end - cursor) & 0x80) return -1;  // the SEQUENCE
  if (ASN1_get_object(&cursor, &length, &tag, &tag_class, end - cursor) & 0x80) return -1;  // the algorithm
  cursor += length;
  if ((ASN1_get_object(&cursor, &length, &tag, &tag_class, end - cursor) & 0x80) || tag != V_ASN1_BIT_STRING ||
      length < 1) {
    return -1;
  }
  return *cursor;
}

// Requests the fast path refuses by design though d2i_X509_REQ parses them, because
// d2i_X509_REQ leaves attributes undecoded: requested extensions OpenSSL cannot read
// either (the CA would refuse them there too), and the limits SplitCsr sets on what a
// request may carry (pki/der.cc ExtensionsFrom), a version other than RFC 2986's, and a
// key or signature that is not whole bytes.
bool RefusedOnPurpose(X509_REQ* request) {
  if (X509_REQ_get_version(request) != 0) return true;  // RFC 2986 knows only v1 (0)
  if (UnusedKeyBits(request) != 0) return true;          // every accepted key is whole bytes
  const ASN1_BIT_STRING* signature = nullptr;
  X509_REQ_get0_signature(request, &signature, nullptr);
  if ((signature->flags & 0x07) != 0) return true;  // X509_REQ_verify refuses it too
  const int attributes = X509_REQ_get_attr_count(request);
  if (attributes > 16) return true;
  int extension_requests = 0;
  for (int i = 0; i < attributes; ++i) {
    X509_ATTRIBUTE* attribute = X509_REQ_get_attr(request, i);
    if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attribute)) != NID_ext_req) continue;
    ++extension_requests;
    if (X509_ATTRIBUTE_count(attribute) != 1) return true;
  }
  if (extension_requests > 1) return true;
  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request);
  if (extensions == nullptr) return true;
  const bool too_many = sk_X509_EXTENSION_num(extensions) > 32;
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  return too_many;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view der(reinterpret_cast<const char*>(data), size);

  const unsigned char* cursor = data;
  UniquePtr<X509_REQ> request(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(size)));
  const bool openssl_whole = request != nullptr && cursor == data + size;
  const bool canonical = openssl_whole && Reencoded(request.get()) == der;

  absl::StatusOr<relay::pki::internal::CsrParts> parts = relay::pki::internal::SplitCsr(der);
  if (parts.ok()) {
    FUZZ_CHECK(openssl_whole, "OpenSSL parses every request the fast path splits");
    FUZZ_CHECK(X509_NAME_cmp(parts->subject.get(), X509_REQ_get_subject_name(request.get())) == 0,
               "the same subject");
    X509_PUBKEY* key = X509_REQ_get_X509_PUBKEY(request.get());
    FUZZ_CHECK(Der(i2d_X509_PUBKEY, key) == parts->public_key_info, "the same public key info");
    const ASN1_BIT_STRING* signature = nullptr;
    const X509_ALGOR* algorithm = nullptr;
    X509_REQ_get0_signature(request.get(), &signature, &algorithm);
    FUZZ_CHECK(ASN1_STRING_cmp(signature, parts->signature.get()) == 0, "the same signature");
    FUZZ_CHECK(X509_ALGOR_cmp(algorithm, parts->signature_algorithm.get()) == 0, "the same signature algorithm");
    STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request.get());
    const int openssl_count = extensions == nullptr ? 0 : sk_X509_EXTENSION_num(extensions);
    const int fast_count = parts->extensions == nullptr ? 0 : sk_X509_EXTENSION_num(parts->extensions.get());
    // OpenSSL reads only the first extensionRequest; the fast path must not find
    // extensions it does not (the CA checks the SAN the fast path returns).
    if (openssl_count == fast_count) {
      for (int i = 0; i < fast_count; ++i) {
        FUZZ_CHECK(Der(i2d_X509_EXTENSION, sk_X509_EXTENSION_value(extensions, i)) ==
                       Der(i2d_X509_EXTENSION, sk_X509_EXTENSION_value(parts->extensions.get(), i)),
                   "the same extensions");
      }
    } else {
      FUZZ_CHECK(fast_count == 0 && openssl_count > 0, "the same number of extensions");
    }
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  } else if (canonical && !RefusedOnPurpose(request.get())) {
    std::fprintf(stderr, "fast path: %s\n", std::string(parts.status().message()).c_str());
    FUZZ_CHECK(false, "the fast path splits every canonical request OpenSSL parses");
  }

  absl::StatusOr<relay::pki::VerifiedCsr> verified = relay::pki::VerifyCsrDer(der);
  if (verified.ok()) {
    FUZZ_CHECK(openssl_whole, "OpenSSL parses every request VerifyCsrDer accepts");
    EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
    FUZZ_CHECK(key != nullptr && EVP_PKEY_eq(key, verified->public_key.get()) == 1, "the same key");
    FUZZ_CHECK(X509_REQ_verify(request.get(), key) == 1, "OpenSSL verifies the signature too");
    std::vector<std::string> names = OpenSslDnsNames(request.get());
    FUZZ_CHECK(names.size() == 1 && names[0] == verified->cluster, "the one DNS name is the cluster");
  }
  relay::pki::ClearSslErrors();
  return 0;
}
