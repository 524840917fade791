#ifndef RELAY_PKI_PEM_H_
#define RELAY_PKI_PEM_H_

#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pki/ssl_types.h"

namespace relay::pki {

// Upper bounds on PEM input: a CSR or a single key or certificate (an RSA-4096
// certificate is about 2 KiB), and a chain or root bundle.
inline constexpr size_t kMaxPemObjectBytes = 16 * 1024;
inline constexpr size_t kMaxPemBundleBytes = 256 * 1024;
inline constexpr size_t kMaxBundleCertificates = 64;

// Private keys: PKCS#8 ("PRIVATE KEY"), or the traditional "EC PRIVATE KEY" and
// "RSA PRIVATE KEY" forms that the openssl command line writes.
absl::StatusOr<UniquePtr<EVP_PKEY>> ParsePrivateKeyPem(absl::string_view pem);
absl::StatusOr<std::string> PrivateKeyToPem(const EVP_PKEY* key);

// Exactly one certificate; anything after it is an error (use ParseCertificateChainPem).
absl::StatusOr<UniquePtr<X509>> ParseCertificatePem(absl::string_view pem);
absl::StatusOr<std::string> CertificateToPem(const X509* cert);

// One or more certificates in order (leaf first for a chain). An empty input is an error.
absl::StatusOr<std::vector<UniquePtr<X509>>> ParseCertificateChainPem(absl::string_view pem);
absl::StatusOr<std::string> CertificateChainToPem(const std::vector<const X509*>& chain);

// The DER inside one PEM block labelled `label` ("CERTIFICATE REQUEST" also accepts the
// older "NEW CERTIFICATE REQUEST"). Anything but whitespace after it is an error.
absl::StatusOr<std::string> PemBlockToDer(absl::string_view pem, absl::string_view label);

absl::StatusOr<UniquePtr<X509_REQ>> ParseCsrPem(absl::string_view pem);
absl::StatusOr<std::string> CsrToPem(const X509_REQ* csr);

}  // namespace relay::pki

#endif  // RELAY_PKI_PEM_H_
