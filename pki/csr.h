#ifndef RELAY_PKI_CSR_H_
#define RELAY_PKI_CSR_H_

#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pki/keys.h"
#include "pki/ssl_types.h"

namespace relay::pki {

// A CSR for `key` with CN = `cluster` and one DNS SAN = `cluster`, signed with the key.
absl::StatusOr<UniquePtr<X509_REQ>> CreateCsr(const EVP_PKEY* key, absl::string_view cluster);
absl::StatusOr<std::string> CreateCsrPem(const EVP_PKEY* key, absl::string_view cluster);

// What a CSR that passed VerifyCsr asks for.
struct VerifiedCsr {
  std::string cluster;  // the one DNS SAN, a DNS label
  KeyType key_type;
  UniquePtr<EVP_PKEY> public_key;
  std::string public_key_info;  // SubjectPublicKeyInfo DER, for issuance
};

// Checks what the CA relies on before it signs: the self-signature, the key policy
// (keys.h), exactly one SAN which is a DNS label, a CN (if any) equal to it, and no
// request for CA:TRUE. Other requested extensions are ignored: the CA sets its own.
// Errors are INVALID_ARGUMENT and say what is wrong with the request.
absl::StatusOr<VerifiedCsr> VerifyCsr(const X509_REQ* csr);
absl::StatusOr<VerifiedCsr> VerifyCsrDer(absl::string_view der);

// One PEM CSR block, verified.
absl::StatusOr<VerifiedCsr> ParseAndVerifyCsrPem(absl::string_view pem);

}  // namespace relay::pki

#endif  // RELAY_PKI_CSR_H_
