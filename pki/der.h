#ifndef RELAY_PKI_DER_H_
#define RELAY_PKI_DER_H_

// Splitting a few DER structures into their parts with the TLS library's own decoders
// (ASN1_get_object, d2i_X509_ALGOR, ...), without decoding the public key.
//
// Why: OpenSSL 3.0 decodes every SubjectPublicKeyInfo it parses through its provider
// decoders, and encodes one through its encoders on X509_set_pubkey; on this kind of
// machine that costs ~120 us to parse a CSR and ~190 us to set a certificate's key,
// next to ~60 us for the ECDSA verify and ~28 us for the sign that matter. Keeping the
// key as bytes until it is needed is what makes issuance fast (README "Performance").

#include <string>
#include <vector>

#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pki/ssl_types.h"

namespace relay::pki::internal {

// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
struct PublicKeyInfoParts {
  UniquePtr<X509_ALGOR> algorithm;
  UniquePtr<ASN1_STRING> public_key;  // the BIT STRING
};
absl::StatusOr<PublicKeyInfoParts> SplitPublicKeyInfo(absl::string_view der);

// CertificationRequest (PKCS #10), with the signed part kept as its original bytes.
struct CsrParts {
  absl::string_view signed_info;      // DER of certificationRequestInfo (points into input)
  UniquePtr<X509_NAME> subject;
  absl::string_view public_key_info;  // DER of subjectPKInfo (points into input)
  PublicKeyInfoParts public_key_parts;  // the same, decoded
  UniquePtr<STACK_OF(X509_EXTENSION)> extensions;  // from the extensionRequest attribute
  UniquePtr<X509_ALGOR> signature_algorithm;
  UniquePtr<ASN1_STRING> signature;   // the BIT STRING
};
absl::StatusOr<CsrParts> SplitCsr(absl::string_view der);

// The parts of a Certificate that say who it names and who issued it, read without
// decoding its public key (which d2i_X509 does, through the provider decoders).
// Views point into the input.
struct CertificateParts {
  absl::string_view version;              // the whole [0] element; empty when absent (v1)
  UniquePtr<ASN1_STRING> serial;          // INTEGER
  absl::string_view signature_algorithm;  // the whole AlgorithmIdentifier in the TBS
  absl::string_view issuer;               // DER of the issuer Name
  UniquePtr<ASN1_TIME> not_before;
  UniquePtr<ASN1_TIME> not_after;
  UniquePtr<STACK_OF(X509_EXTENSION)> extensions;  // null when absent
  std::vector<absl::string_view> extension_der;   // each extension's DER, same order
};
absl::StatusOr<CertificateParts> SplitCertificate(absl::string_view der);

// The parts of a signed certificate's DER that stay the same for every client
// certificate one issuer signs, cut from one such certificate (the slow path's output),
// so the fast path (ca.cc IssueClient) assembles the same structure from bytes.
struct ClientCertificateTemplate {
  std::string version;              // [0] EXPLICIT INTEGER, the whole element
  std::string signature_algorithm;  // AlgorithmIdentifier, the whole element
  std::string issuer;               // Name, the whole element
  // Extension elements in order. The subjectAltName and the subjectKeyIdentifier
  // differ per certificate: for them `per_certificate_nid` says which, and `der` is empty.
  struct Extension {
    std::string der;
    int per_certificate_nid = 0;
  };
  std::vector<Extension> extensions;
};
absl::StatusOr<ClientCertificateTemplate> SplitClientCertificate(absl::string_view der);

// DER writing: one element of `tag` around `content`.
std::string DerElement(unsigned char tag, absl::string_view content);

// Sets `cert`'s public key from SubjectPublicKeyInfo DER, copying bytes only.
absl::Status SetCertificatePublicKeyInfo(X509* cert, absl::string_view der);

}  // namespace relay::pki::internal

#endif  // RELAY_PKI_DER_H_
