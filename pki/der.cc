#include "pki/der.h"

#include <set>
#include <string>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "pki/ssl_error.h"

namespace relay::pki::internal {
namespace {

absl::Status Malformed(absl::string_view what) {
  return SslError(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("certificate signing request is malformed: ", what));
}

// A DER cursor over [pos, end).
class DerReader {
 public:
  explicit DerReader(absl::string_view der)
      : pos_(reinterpret_cast<const unsigned char*>(der.data())), end_(pos_ + der.size()) {}
  DerReader(const unsigned char* begin, const unsigned char* end) : pos_(begin), end_(end) {}

  bool empty() const { return pos_ == end_; }
  const unsigned char* pos() const { return pos_; }

  // Reads one element's header, which must have `tag` and `tag_class` and be
  // constructed; returns a reader over its contents and moves past it. `whole`, when
  // given, receives the whole element (header and contents).
  absl::StatusOr<DerReader> Enter(int tag, int tag_class, absl::string_view* whole = nullptr) {
    const unsigned char* start = pos_;
    const unsigned char* cursor = pos_;
    long length = 0;
    int got_tag = 0, got_class = 0;
    int flags = ASN1_get_object(&cursor, &length, &got_tag, &got_class, end_ - pos_);
    // 0x80: error; 0x21: indefinite length, which DER does not allow.
    if ((flags & 0x80) != 0 || flags != V_ASN1_CONSTRUCTED || got_tag != tag ||
        got_class != tag_class || length > end_ - cursor) {
      return absl::InvalidArgumentError("unexpected DER element");
    }
    pos_ = cursor + length;
    if (whole != nullptr) {
      *whole = absl::string_view(reinterpret_cast<const char*>(start),
                                 static_cast<size_t>(pos_ - start));
    }
    return DerReader(cursor, pos_);
  }

  // Decodes one element with a d2i function.
  template <typename T, typename D2i>
  UniquePtr<T> Decode(D2i d2i) {
    const unsigned char* cursor = pos_;
    UniquePtr<T> value(d2i(nullptr, &cursor, end_ - pos_));
    if (value) pos_ = cursor;
    return value;
  }

  bool Peek(int tag, int tag_class) const {
    const unsigned char* cursor = pos_;
    long length = 0;
    int got_tag = 0, got_class = 0;
    int flags = ASN1_get_object(&cursor, &length, &got_tag, &got_class, end_ - pos_);
    return (flags & 0x80) == 0 && got_tag == tag && got_class == tag_class;
  }

 private:
  const unsigned char* pos_;
  const unsigned char* end_;
};

absl::string_view View(const unsigned char* begin, const unsigned char* end) {
  return absl::string_view(reinterpret_cast<const char*>(begin), static_cast<size_t>(end - begin));
}

// The extensions of an extensionRequest attribute, or null when it is absent.
absl::StatusOr<UniquePtr<STACK_OF(X509_EXTENSION)>> ExtensionsFrom(DerReader attributes) {
  UniquePtr<STACK_OF(X509_EXTENSION)> extensions;
  int count = 0;
  while (!attributes.empty()) {
    if (++count > 16) return Malformed("too many attributes");
    UniquePtr<X509_ATTRIBUTE> attribute = attributes.Decode<X509_ATTRIBUTE>(d2i_X509_ATTRIBUTE);
    if (!attribute) return Malformed("unreadable attribute");
    if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attribute.get())) != NID_ext_req) continue;
    if (extensions) return Malformed("two extensionRequest attributes");
    if (X509_ATTRIBUTE_count(attribute.get()) != 1) return Malformed("extensionRequest must hold one value");
    const ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attribute.get(), 0);
    if (value == nullptr || value->type != V_ASN1_SEQUENCE) {
      return Malformed("extensionRequest is not a sequence");
    }
    const unsigned char* cursor = ASN1_STRING_get0_data(value->value.sequence);
    long length = ASN1_STRING_length(value->value.sequence);
    extensions.reset(d2i_X509_EXTENSIONS(nullptr, &cursor, length));
    if (!extensions) return Malformed("unreadable requested extensions");
    if (sk_X509_EXTENSION_num(extensions.get()) > 32) return Malformed("too many extensions");
  }
  return extensions;
}

}  // namespace

absl::StatusOr<PublicKeyInfoParts> SplitPublicKeyInfo(absl::string_view der) {
  DerReader outer(der);
  absl::StatusOr<DerReader> spki = outer.Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!spki.ok() || !outer.empty()) return Malformed("bad public key info");
  PublicKeyInfoParts parts;
  parts.algorithm = spki->Decode<X509_ALGOR>(d2i_X509_ALGOR);
  if (!parts.algorithm) return Malformed("bad public key algorithm");
  parts.public_key = spki->Decode<ASN1_STRING>(d2i_ASN1_BIT_STRING);
  if (!parts.public_key || !spki->empty()) return Malformed("bad public key");
  // Every key type a CSR may carry is whole bytes. Unused bits would make the bytes this
  // path copies into the certificate differ from the DER OpenSSL reads (found by
  // //fuzz:csr_fuzz_test).
  if ((parts.public_key->flags & 0x07) != 0) return Malformed("public key is not a whole number of bytes");
  // And the bytes must be DER (no long-form lengths where short ones fit, say), since
  // they go into the certificate as they are.
  std::string algorithm, key;
  if (!EncodeDer(i2d_X509_ALGOR, parts.algorithm.get(), &algorithm) ||
      !EncodeDer(i2d_ASN1_BIT_STRING, parts.public_key.get(), &key) || DerElement(0x30, algorithm + key) != der) {
    return Malformed("public key info is not DER");
  }
  return parts;
}

absl::StatusOr<CsrParts> SplitCsr(absl::string_view der) {
  DerReader outer(der);
  absl::StatusOr<DerReader> request = outer.Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!request.ok() || !outer.empty()) return Malformed("not a single DER sequence");
  CsrParts parts;
  absl::StatusOr<DerReader> info =
      request->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &parts.signed_info);
  if (!info.ok()) return Malformed("no certificationRequestInfo");

  UniquePtr<ASN1_STRING> version = info->Decode<ASN1_STRING>(d2i_ASN1_INTEGER);
  if (!version || ASN1_INTEGER_get(version.get()) != 0) return Malformed("version must be 1 (0)");
  parts.subject = info->Decode<X509_NAME>(d2i_X509_NAME);
  if (!parts.subject) return Malformed("unreadable subject name");
  const unsigned char* key_start = info->pos();
  absl::StatusOr<DerReader> key = info->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!key.ok()) return Malformed("no subject public key info");
  parts.public_key_info = View(key_start, info->pos());
  // Decoded here, so a request is whole or refused before its signature is checked.
  absl::StatusOr<PublicKeyInfoParts> key_parts = SplitPublicKeyInfo(parts.public_key_info);
  if (!key_parts.ok()) return Malformed("unreadable subject public key info");
  parts.public_key_parts = *std::move(key_parts);
  if (info->Peek(0, V_ASN1_CONTEXT_SPECIFIC)) {
    absl::StatusOr<DerReader> attributes = info->Enter(0, V_ASN1_CONTEXT_SPECIFIC);
    if (!attributes.ok()) return Malformed("unreadable attributes");
    ASSIGN_OR_RETURN(parts.extensions, ExtensionsFrom(*attributes));
  }
  if (!info->empty()) return Malformed("trailing data in certificationRequestInfo");

  parts.signature_algorithm = request->Decode<X509_ALGOR>(d2i_X509_ALGOR);
  if (!parts.signature_algorithm) return Malformed("unreadable signature algorithm");
  parts.signature = request->Decode<ASN1_STRING>(d2i_ASN1_BIT_STRING);
  if (!parts.signature || !request->empty()) return Malformed("unreadable signature");
  // OpenSSL refuses a signature with unused bits; so does this path (found by
  // //fuzz:csr_fuzz_test, which verified one OpenSSL would not).
  if ((parts.signature->flags & 0x07) != 0) return Malformed("signature is not a whole number of bytes");
  ClearSslErrors();
  return parts;
}

absl::StatusOr<CertificateParts> SplitCertificate(absl::string_view der) {
  auto malformed = [](absl::string_view what) {
    return SslError(absl::StatusCode::kInvalidArgument, absl::StrCat("certificate is malformed: ", what));
  };
  DerReader outer(der);
  absl::StatusOr<DerReader> certificate = outer.Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!certificate.ok() || !outer.empty()) return malformed("not a single DER sequence");
  absl::StatusOr<DerReader> tbs = certificate->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!tbs.ok()) return malformed("no tbsCertificate");
  CertificateParts parts;
  if (tbs->Peek(0, V_ASN1_CONTEXT_SPECIFIC)) {
    absl::StatusOr<DerReader> version = tbs->Enter(0, V_ASN1_CONTEXT_SPECIFIC, &parts.version);
    if (!version.ok() || !version->Decode<ASN1_STRING>(d2i_ASN1_INTEGER) || !version->empty()) {
      return malformed("unreadable version");
    }
  }
  parts.serial = tbs->Decode<ASN1_STRING>(d2i_ASN1_INTEGER);
  if (!parts.serial) return malformed("unreadable serial number");
  // The signature algorithm and the issuer are kept as bytes, but decoded once, so what
  // this accepts OpenSSL reads too (found by //fuzz:certificate_fuzz_test).
  const unsigned char* start = tbs->pos();
  if (!tbs->Decode<X509_ALGOR>(d2i_X509_ALGOR)) return malformed("no signature algorithm");
  parts.signature_algorithm = View(start, tbs->pos());
  start = tbs->pos();
  if (!tbs->Decode<X509_NAME>(d2i_X509_NAME)) return malformed("no issuer");
  parts.issuer = View(start, tbs->pos());
  absl::StatusOr<DerReader> validity = tbs->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
  if (!validity.ok()) return malformed("no validity");
  parts.not_before = validity->Decode<ASN1_TIME>(d2i_ASN1_TIME);
  parts.not_after = validity->Decode<ASN1_TIME>(d2i_ASN1_TIME);
  if (!parts.not_before || !parts.not_after || !validity->empty()) return malformed("unreadable validity");
  if (!tbs->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL).ok()) return malformed("no subject");
  if (!tbs->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL).ok()) return malformed("no subject public key info");
  // issuerUniqueID [1] and subjectUniqueID [2] are primitive and never used by this
  // system's certificates: refuse them rather than skip them.
  if (tbs->Peek(3, V_ASN1_CONTEXT_SPECIFIC)) {
    absl::StatusOr<DerReader> explicit_extensions = tbs->Enter(3, V_ASN1_CONTEXT_SPECIFIC);
    if (!explicit_extensions.ok()) return malformed("unreadable extensions");
    absl::StatusOr<DerReader> extensions = explicit_extensions->Enter(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    parts.extensions.reset(sk_X509_EXTENSION_new_null());
    if (!extensions.ok() || !explicit_extensions->empty() || !parts.extensions) {
      return malformed("unreadable extensions");
    }
    // Found by //fuzz:certificate_fuzzer: a second subjectAltName added its names to the
    // first one's, where OpenSSL sees none. RFC 5280 4.2: no extension may appear twice
    // (OpenSSL 3's verification refuses such a certificate too).
    std::set<std::string> seen_oids;
    while (!extensions->empty()) {
      const unsigned char* start = extensions->pos();
      UniquePtr<X509_EXTENSION> extension = extensions->Decode<X509_EXTENSION>(d2i_X509_EXTENSION);
      if (!extension) return malformed("unreadable extension");
      const ASN1_OBJECT* oid = X509_EXTENSION_get_object(extension.get());
      if (!seen_oids.emplace(reinterpret_cast<const char*>(OBJ_get0_data(oid)), OBJ_length(oid)).second) {
        return malformed("an extension appears twice (RFC 5280 4.2)");
      }
      if (!sk_X509_EXTENSION_push(parts.extensions.get(), extension.get())) return malformed("unreadable extension");
      extension.release();  // the stack owns it
      parts.extension_der.push_back(View(start, extensions->pos()));
    }
  }
  if (!tbs->empty()) return malformed("unexpected fields in tbsCertificate");
  // Found by //fuzz:certificate_fuzz_test: what follows the TBS must be the signature
  // algorithm and the signature, and nothing else, as d2i_X509 requires.
  UniquePtr<X509_ALGOR> outer_algorithm = certificate->Decode<X509_ALGOR>(d2i_X509_ALGOR);
  UniquePtr<ASN1_STRING> signature = certificate->Decode<ASN1_STRING>(d2i_ASN1_BIT_STRING);
  if (!outer_algorithm || !signature || !certificate->empty()) return malformed("unreadable signature");
  ClearSslErrors();
  return parts;
}

std::string DerElement(unsigned char tag, absl::string_view content) {
  std::string out(1, static_cast<char>(tag));
  size_t length = content.size();
  if (length < 0x80) {
    out.push_back(static_cast<char>(length));
  } else {
    std::string bytes;
    for (; length > 0; length >>= 8) bytes.insert(bytes.begin(), static_cast<char>(length & 0xff));
    out.push_back(static_cast<char>(0x80 | bytes.size()));
    out += bytes;
  }
  out.append(content.data(), content.size());
  return out;
}

absl::StatusOr<ClientCertificateTemplate> SplitClientCertificate(absl::string_view der) {
  auto malformed = [](absl::string_view what) {
    return absl::InternalError(absl::StrCat("client certificate template: ", what));
  };
  absl::StatusOr<CertificateParts> parts = SplitCertificate(der);
  if (!parts.ok()) return malformed(parts.status().message());
  if (parts->version.empty() || !parts->extensions) return malformed("not a v3 certificate with extensions");
  ClientCertificateTemplate pieces;
  pieces.version = std::string(parts->version);
  pieces.signature_algorithm = std::string(parts->signature_algorithm);
  pieces.issuer = std::string(parts->issuer);
  for (size_t i = 0; i < parts->extension_der.size(); ++i) {
    X509_EXTENSION* extension = sk_X509_EXTENSION_value(parts->extensions.get(), static_cast<int>(i));
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(extension));
    if (nid == NID_subject_alt_name || nid == NID_subject_key_identifier) {
      if (X509_EXTENSION_get_critical(extension)) return malformed("critical per-certificate extension");
      pieces.extensions.push_back({"", nid});
    } else {
      pieces.extensions.push_back({std::string(parts->extension_der[i]), 0});
    }
  }
  return pieces;
}

absl::Status SetCertificatePublicKeyInfo(X509* cert, absl::string_view der) {
  ASSIGN_OR_RETURN(PublicKeyInfoParts parts, SplitPublicKeyInfo(der));
  const ASN1_OBJECT* algorithm = nullptr;
  int parameter_type = 0;
  const void* parameter = nullptr;
  X509_ALGOR_get0(&algorithm, &parameter_type, &parameter, parts.algorithm.get());
  UniquePtr<ASN1_OBJECT> parameter_copy;
  switch (parameter_type) {
    case V_ASN1_UNDEF:
    case V_ASN1_NULL:
      break;
    case V_ASN1_OBJECT:
      parameter_copy.reset(OBJ_dup(static_cast<const ASN1_OBJECT*>(parameter)));
      if (!parameter_copy) return SslError(absl::StatusCode::kInternal, "copying key parameters");
      break;
    default:
      return absl::InvalidArgumentError(
          "public key parameters are not supported: use a named curve or an RSA key");
  }
  int length = ASN1_STRING_length(parts.public_key.get());
  OpensslPtr<unsigned char> bits(static_cast<unsigned char*>(
      OPENSSL_memdup(ASN1_STRING_get0_data(parts.public_key.get()), static_cast<size_t>(length))));
  UniquePtr<ASN1_OBJECT> algorithm_copy(OBJ_dup(algorithm));
  if (!bits || !algorithm_copy ||
      X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(cert), algorithm_copy.get(), parameter_type,
                             parameter_copy.get(), bits.get(), length) != 1) {
    return SslError(absl::StatusCode::kInternal, "setting the certificate's public key");
  }
  // set0 took ownership of the algorithm, the parameter and the bits.
  algorithm_copy.release();
  parameter_copy.release();
  bits.release();
  return absl::OkStatus();
}

}  // namespace relay::pki::internal
