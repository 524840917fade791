#include "pki/client_assembly.h"

#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/status_macros.h"
#include "pki/ssl_error.h"

namespace relay::pki::internal {
namespace {

// Identifier octets of the constructed universal types (tag | 0x20).
constexpr unsigned char kDerSequence = 0x30;
constexpr unsigned char kDerSet = 0x31;

// UTCTime for 1950-2049, GeneralizedTime otherwise, as ASN1_TIME_set chooses.
std::string DerTime(absl::Time time) {
  absl::CivilSecond civil = absl::ToCivilSecond(time, absl::UTCTimeZone());
  if (civil.year() >= 1950 && civil.year() < 2050) {
    return DerElement(V_ASN1_UTCTIME, absl::FormatTime("%y%m%d%H%M%SZ", time, absl::UTCTimeZone()));
  }
  return DerElement(V_ASN1_GENERALIZEDTIME, absl::FormatTime("%Y%m%d%H%M%SZ", time, absl::UTCTimeZone()));
}

std::string DerObject(int nid) {
  const ASN1_OBJECT* object = OBJ_nid2obj(nid);
  return DerElement(V_ASN1_OBJECT,
                    absl::string_view(reinterpret_cast<const char*>(OBJ_get0_data(object)), OBJ_length(object)));
}

std::string Pem(absl::string_view label, absl::string_view der) {
  std::string base64 = absl::Base64Escape(der);
  std::string pem = absl::StrCat("-----BEGIN ", label, "-----\n");
  for (size_t at = 0; at < base64.size(); at += 64) {
    pem.append(base64, at, 64);
    pem += '\n';
  }
  absl::StrAppend(&pem, "-----END ", label, "-----\n");
  return pem;
}

}  // namespace

absl::StatusOr<std::string> RandomSerialBytes() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return SslError(absl::StatusCode::kInternal, "drawing a random serial");
  }
  bytes[0] &= 0x7f;  // positive
  bytes[0] |= 0x40;  // full 16 octets, never zero
  return std::string(reinterpret_cast<char*>(bytes), sizeof(bytes));
}

std::string KeyIdentifierOfBits(const unsigned char* bits, size_t length) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(bits, length, digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

const EVP_MD* SigningDigest(const EVP_PKEY* signing_key) {
  return EVP_PKEY_id(signing_key) == EVP_PKEY_EC && EVP_PKEY_bits(signing_key) > 256 ? EVP_sha384()
                                                                                     : EVP_sha256();
}

absl::StatusOr<ClientCertificateAssembler> ClientCertificateAssembler::FromSample(const X509* sample) {
  std::string der;
  if (!EncodeDer(i2d_X509, sample, &der)) {
    return SslError(absl::StatusCode::kInternal, "encoding the template certificate");
  }
  ASSIGN_OR_RETURN(ClientCertificateTemplate parts, SplitClientCertificate(der));
  return ClientCertificateAssembler(std::move(parts));
}

absl::StatusOr<ClientCertificateAssembler::Assembled> ClientCertificateAssembler::Assemble(
    const VerifiedCsr& csr, absl::Time not_before, absl::Time not_after, const EVP_PKEY* signing_key) const {
  ASSIGN_OR_RETURN(std::string serial_bytes, RandomSerialBytes());
  ASSIGN_OR_RETURN(PublicKeyInfoParts key, SplitPublicKeyInfo(csr.public_key_info));
  std::string key_id = KeyIdentifierOfBits(ASN1_STRING_get0_data(key.public_key.get()),
                                           static_cast<size_t>(ASN1_STRING_length(key.public_key.get())));

  std::string extensions;
  for (const ClientCertificateTemplate::Extension& extension : parts_.extensions) {
    switch (extension.per_certificate_nid) {
      case 0:
        extensions += extension.der;
        break;
      case NID_subject_alt_name:
        extensions += DerElement(
            kDerSequence,
            DerObject(NID_subject_alt_name) +
                DerElement(V_ASN1_OCTET_STRING, DerElement(kDerSequence, DerElement(0x80 | GEN_DNS, csr.cluster))));
        break;
      case NID_subject_key_identifier:
        extensions += DerElement(kDerSequence, DerObject(NID_subject_key_identifier) +
                                                   DerElement(V_ASN1_OCTET_STRING, DerElement(V_ASN1_OCTET_STRING, key_id)));
        break;
    }
  }
  std::string subject = DerElement(
      kDerSequence,
      DerElement(kDerSet, DerElement(kDerSequence, DerObject(NID_commonName) + DerElement(V_ASN1_UTF8STRING, csr.cluster))));
  std::string tbs = DerElement(
      kDerSequence,
      absl::StrCat(parts_.version, DerElement(V_ASN1_INTEGER, serial_bytes), parts_.signature_algorithm,
                   parts_.issuer, DerElement(kDerSequence, DerTime(not_before) + DerTime(not_after)), subject,
                   csr.public_key_info, DerElement(0xa3, DerElement(kDerSequence, extensions))));

  UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  size_t signature_length = 0;
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, SigningDigest(signing_key), nullptr,
                         const_cast<EVP_PKEY*>(signing_key)) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &signature_length, reinterpret_cast<const unsigned char*>(tbs.data()),
                     tbs.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "signing the certificate");
  }
  std::string signature(signature_length + 1, '\0');  // a leading 0: no unused bits
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()) + 1, &signature_length,
                     reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size()) != 1) {
    return SslError(absl::StatusCode::kInternal, "signing the certificate");
  }
  signature.resize(signature_length + 1);
  std::string certificate =
      DerElement(kDerSequence, tbs + parts_.signature_algorithm + DerElement(V_ASN1_BIT_STRING, signature));

  Assembled assembled;
  assembled.certificate_pem = Pem("CERTIFICATE", certificate);
  assembled.serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(serial_bytes));
  return assembled;
}

}  // namespace relay::pki::internal
