#ifndef RELAY_PKI_TESTING_H_
#define RELAY_PKI_TESTING_H_

// Test helpers: a root and an intermediate made in the test at a fixed reference time
// (as BoringSSL's MakeTestCert does), instead of PEM files that expire.

#include <memory>
#include <utility>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pki/ca.h"
#include "pki/keys.h"

namespace relay::pki::testing {

// 2026-01-01T00:00:00Z.
inline absl::Time ReferenceTime() { return absl::FromUnixSeconds(1767225600); }

template <typename T>
T ValueOrDie(absl::StatusOr<T> value) {
  EXPECT_TRUE(value.ok()) << value.status();
  if (!value.ok()) std::abort();
  return *std::move(value);
}

struct TestPki {
  UniquePtr<EVP_PKEY> root_key;
  UniquePtr<X509> root;
  std::unique_ptr<Issuer> root_issuer;
  std::unique_ptr<Issuer> intermediate;

  static TestPki Make(absl::Time now = ReferenceTime(), KeyType type = KeyType::kEcdsaP256) {
    TestPki pki;
    pki.root_key = ValueOrDie(GenerateKey(type));
    pki.root = ValueOrDie(CreateSelfSignedCertificate(
        pki.root_key.get(), RootCaSpec("relay-root-ca", now, absl::Hours(24 * 3650))));
    X509_up_ref(pki.root.get());
    EVP_PKEY_up_ref(pki.root_key.get());
    pki.root_issuer = ValueOrDie(Issuer::Create(UniquePtr<X509>(pki.root.get()),
                                                UniquePtr<EVP_PKEY>(pki.root_key.get()), now));
    UniquePtr<EVP_PKEY> intermediate_key = ValueOrDie(GenerateKey(type));
    UniquePtr<X509> intermediate_cert = ValueOrDie(pki.root_issuer->Issue(
        intermediate_key.get(),
        IntermediateCaSpec("relay-signing-ca", now, absl::Hours(24 * 1825))));
    pki.intermediate = ValueOrDie(
        Issuer::Create(std::move(intermediate_cert), std::move(intermediate_key), now));
    return pki;
  }
};

}  // namespace relay::pki::testing

#endif  // RELAY_PKI_TESTING_H_
