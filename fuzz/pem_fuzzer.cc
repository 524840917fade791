// PEM as it arrives from outside: trust bundles (ca.crt), certificate chains, keys and
// CSRs. Properties: no crash or leak, and a bundle that parses writes back to PEM that
// parses to the same certificates.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "pki/ssl_error.h"

using relay::pki::UniquePtr;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view pem(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<std::vector<UniquePtr<X509>>> chain = relay::pki::ParseCertificateChainPem(pem);
  if (chain.ok()) {
    absl::StatusOr<std::string> written = relay::pki::CertificateChainToPem(relay::pki::Borrow(*chain));
    FUZZ_CHECK(written.ok(), "a parsed bundle writes back");
    absl::StatusOr<std::vector<UniquePtr<X509>>> again = relay::pki::ParseCertificateChainPem(*written);
    FUZZ_CHECK(again.ok() && again->size() == chain->size(), "a written bundle parses to as many certificates");
    for (size_t i = 0; i < chain->size(); ++i) {
      FUZZ_CHECK(X509_cmp((*chain)[i].get(), (*again)[i].get()) == 0, "the same certificates, in order");
    }
  }
  relay::pki::ParseCertificatePem(pem).IgnoreError();
  relay::pki::SummarizeLeafPem(pem).IgnoreError();
  relay::pki::PemBlockToDer(pem, "CERTIFICATE").IgnoreError();
  relay::pki::ParseCsrPem(pem).IgnoreError();
  relay::pki::ParsePrivateKeyPem(pem).IgnoreError();
  relay::pki::ClearSslErrors();
  return 0;
}
