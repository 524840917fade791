// Certificates from outside (a peer's leaf after the handshake, ca.crt of a secret, an
// operator's staged root), as DER. Differential: the fast leaf reader
// (SummarizeLeafPem, which skips the public key) and SplitCertificate must agree with
// OpenSSL's d2i_X509 + InspectCertificate on every field they both return. The fast
// reader skips the subject and the public key (it runs on certificates OpenSSL has
// already verified in the handshake, and the caller is named by the SAN), so it may
// accept a certificate OpenSSL refuses in those two fields, and only there.

#include <cstdint>
#include <string>

#include <openssl/x509.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "fuzz/fuzz_support.h"
#include "pki/certificate.h"
#include "pki/der.h"
#include "pki/ssl_error.h"

namespace {

using relay::pki::UniquePtr;

std::string ToPem(absl::string_view der) {
  std::string base64 = absl::Base64Escape(der);
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (size_t i = 0; i < base64.size(); i += 64) absl::StrAppend(&pem, base64.substr(i, 64), "\n");
  return pem + "-----END CERTIFICATE-----\n";
}

using relay::fuzz::Der;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view der(reinterpret_cast<const char*>(data), size);
  const unsigned char* cursor = data;
  UniquePtr<X509> cert(d2i_X509(nullptr, &cursor, static_cast<long>(size)));
  const bool openssl_whole = cert != nullptr && cursor == data + size;
  const std::string refused_in = cert == nullptr ? relay::fuzz::TakeOpenSslErrorFields() : "";
  const bool refused_in_skipped_field = absl::StrContains(refused_in, "Field=key, Type=X509_CINF") ||
                                        absl::StrContains(refused_in, "Field=subject, Type=X509_CINF");
  absl::StatusOr<relay::pki::CertificateInfo> info =
      openssl_whole ? relay::pki::InspectCertificate(cert.get())
                    : absl::StatusOr<relay::pki::CertificateInfo>(absl::InvalidArgumentError("unparsed"));
  if (openssl_whole) {
    relay::pki::CheckCaCertificate(cert.get(), absl::Now(), "fuzzed").IgnoreError();
    relay::pki::CheckHost(cert.get(), "cluster-1").IgnoreError();
    relay::pki::SerialHex(cert.get());
    relay::pki::IsIssuedBy(cert.get(), cert.get());
    relay::pki::SameSubjectAndKey(cert.get(), cert.get());
  }

  absl::StatusOr<relay::pki::internal::CertificateParts> parts = relay::pki::internal::SplitCertificate(der);
  if (parts.ok() && !refused_in_skipped_field) {
    FUZZ_CHECK(openssl_whole, "OpenSSL parses every certificate SplitCertificate splits (but for its subject and key)");
    FUZZ_CHECK(ASN1_INTEGER_cmp(parts->serial.get(), X509_get0_serialNumber(cert.get())) == 0, "the same serial");
    // As encoded: ASN1_TIME_compare cannot compare a malformed time (e.g. "...z"), even with itself.
    FUZZ_CHECK(Der(i2d_ASN1_TIME, parts->not_before.get()) == Der(i2d_ASN1_TIME, X509_get0_notBefore(cert.get())), "the same notBefore");
    FUZZ_CHECK(Der(i2d_ASN1_TIME, parts->not_after.get()) == Der(i2d_ASN1_TIME, X509_get0_notAfter(cert.get())), "the same notAfter");
    FUZZ_CHECK(parts->issuer == Der(i2d_X509_NAME, X509_get_issuer_name(cert.get())), "the same issuer");
  }
  relay::pki::internal::SplitClientCertificate(der).IgnoreError();

  absl::StatusOr<relay::pki::LeafSummary> summary = relay::pki::SummarizeLeafPem(ToPem(der));
  if (summary.ok() && !refused_in_skipped_field) {
    FUZZ_CHECK(openssl_whole, "OpenSSL parses every leaf the fast reader accepts (but for its subject and key)");
  }
  if (summary.ok() && info.ok()) {
    FUZZ_CHECK(summary->serial_hex == info->serial_hex, "the same serial");
    FUZZ_CHECK(summary->not_before == info->not_before, "the same notBefore");
    FUZZ_CHECK(summary->not_after == info->not_after, "the same notAfter");
    FUZZ_CHECK(summary->dns_names == info->dns_names, "the same DNS names");
    FUZZ_CHECK(summary->issuer_der == Der(i2d_X509_NAME, X509_get_issuer_name(cert.get())), "the same issuer");
  }
  relay::pki::ClearSslErrors();
  return 0;
}
