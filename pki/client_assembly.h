#ifndef RELAY_PKI_CLIENT_ASSEMBLY_H_
#define RELAY_PKI_CLIENT_ASSEMBLY_H_

// Client certificates assembled from DER pieces: the fast path of Issuer::IssueClient.
//
// Why: building a certificate through X509 objects makes OpenSSL 3 re-encode the
// subject's key through its provider encoders on X509_set_pubkey (~190 us here, next to
// ~28 us for the signature). Every client certificate one issuer signs has the same
// version, algorithm, issuer name and fixed extensions; these are cut once from a
// certificate built the slow way (a test holds the two paths equal field by field), and
// each new certificate is those bytes plus its serial, validity, subject, key and two
// extensions, signed with EVP_DigestSign. Kept in this file, behind one method.

#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pki/csr.h"
#include "pki/der.h"

namespace relay::pki::internal {

// A random positive 128-bit serial (RFC 5280 allows up to 20 octets), as its 16 octets.
absl::StatusOr<std::string> RandomSerialBytes();

// SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1).
std::string KeyIdentifierOfBits(const unsigned char* bits, size_t length);

// SHA-384 for P-384 signing keys, SHA-256 otherwise.
const EVP_MD* SigningDigest(const EVP_PKEY* signing_key);

class ClientCertificateAssembler {
 public:
  // Cuts the constant parts from `sample`, a client certificate the issuer signed.
  static absl::StatusOr<ClientCertificateAssembler> FromSample(const X509* sample);

  struct Assembled {
    std::string certificate_pem;  // the leaf alone
    std::string serial_hex;
  };
  // A client certificate for the CSR's cluster and key, valid from `not_before` to
  // `not_after`, signed with `signing_key` (the issuer's).
  absl::StatusOr<Assembled> Assemble(const VerifiedCsr& csr, absl::Time not_before, absl::Time not_after,
                                     const EVP_PKEY* signing_key) const;

 private:
  explicit ClientCertificateAssembler(ClientCertificateTemplate parts) : parts_(std::move(parts)) {}
  ClientCertificateTemplate parts_;
};

}  // namespace relay::pki::internal

#endif  // RELAY_PKI_CLIENT_ASSEMBLY_H_
