#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <string>

#include "gtest/gtest.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "pki/testing.h"

namespace {

using ::relay::pki::testing::TestPki;
using ::relay::pki::testing::ValueOrDie;

// gRPC's TLS code reads a chain as pem_cache.cc expects: the leaf with
// PEM_read_bio_X509_AUX, then the rest with PEM_read_bio_X509 until one fails.
TEST(PemCacheTest, AChainReadTwiceGivesTheSameCertificatesInOrder) {
  TestPki pki = TestPki::Make();
  std::string chain = ValueOrDie(relay::pki::CertificateToPem(pki.intermediate->certificate())) +
                      ValueOrDie(relay::pki::CertificateToPem(pki.root.get()));
  X509* first_read[2] = {};
  for (int round = 0; round < 2; ++round) {
    BIO* bio = BIO_new_mem_buf(chain.data(), static_cast<int>(chain.size()));
    X509* leaf = PEM_read_bio_X509_AUX(bio, nullptr, nullptr, const_cast<char*>(""));
    X509* next = PEM_read_bio_X509(bio, nullptr, nullptr, const_cast<char*>(""));
    X509* past_the_end = PEM_read_bio_X509(bio, nullptr, nullptr, const_cast<char*>(""));
    ASSERT_NE(leaf, nullptr);
    ASSERT_NE(next, nullptr);
    EXPECT_EQ(past_the_end, nullptr);
    EXPECT_EQ(X509_cmp(leaf, pki.intermediate->certificate()), 0);
    EXPECT_EQ(X509_cmp(next, pki.root.get()), 0);
    if (round == 0) {
      first_read[0] = leaf;
      first_read[1] = next;
    } else {
      EXPECT_EQ(leaf, first_read[0]) << "decoded again instead of shared";
      EXPECT_EQ(next, first_read[1]);
      X509_free(leaf);
      X509_free(next);
      X509_free(first_read[0]);
      X509_free(first_read[1]);
    }
    BIO_free(bio);
  }
}

TEST(PemCacheTest, KeysAreSharedAndOtherKeysAreNot) {
  auto key_a = ValueOrDie(relay::pki::GenerateKey());
  auto key_b = ValueOrDie(relay::pki::GenerateKey());
  std::string pem_a = ValueOrDie(relay::pki::PrivateKeyToPem(key_a.get()));
  std::string pem_b = ValueOrDie(relay::pki::PrivateKeyToPem(key_b.get()));
  auto read = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, const_cast<char*>(""));
    BIO_free(bio);
    return key;
  };
  EVP_PKEY* a1 = read(pem_a);
  EVP_PKEY* a2 = read(pem_a);
  EVP_PKEY* b = read(pem_b);
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, b);
  EXPECT_EQ(EVP_PKEY_eq(a1, key_a.get()), 1);
  EXPECT_EQ(EVP_PKEY_eq(b, key_b.get()), 1);
  EVP_PKEY_free(a1);
  EVP_PKEY_free(a2);
  EVP_PKEY_free(b);
}

// Libraries reach the readers through the global scope; the benchmark's must win.
TEST(PemCacheTest, TheBinaryDefinitionIsTheGlobalOne) {
  EXPECT_NE(dlsym(RTLD_DEFAULT, "PEM_read_bio_PrivateKey"), dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey"));
  EXPECT_NE(dlsym(RTLD_DEFAULT, "PEM_read_bio_X509_AUX"), dlsym(RTLD_NEXT, "PEM_read_bio_X509_AUX"));
}

}  // namespace
