#include "pki/csr.h"

#include <openssl/crypto.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/pem.h"
#include "pki/testing.h"

namespace relay::pki {
namespace {

using ::relay::pki::testing::ValueOrDie;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;

// A CSR with arbitrary extensions, for requests our own CreateCsr would never make.
std::string CsrWithExtensions(const EVP_PKEY* key, const std::string& cn,
                              const std::vector<std::pair<int, std::string>>& extensions) {
  UniquePtr<X509_REQ> csr(X509_REQ_new());
  UniquePtr<X509_NAME> name(X509_NAME_new());
  UniquePtr<STACK_OF(X509_EXTENSION)> stack(sk_X509_EXTENSION_new_null());
  X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_REQ_set_subject_name(csr.get(), name.get());
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* extension = X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value.c_str());
    EXPECT_NE(extension, nullptr) << value;
    sk_X509_EXTENSION_push(stack.get(), extension);
  }
  if (!extensions.empty()) X509_REQ_add_extensions(csr.get(), stack.get());
  X509_REQ_set_pubkey(csr.get(), const_cast<EVP_PKEY*>(key));
  X509_REQ_sign(csr.get(), const_cast<EVP_PKEY*>(key), EVP_sha256());
  return ValueOrDie(CsrToPem(csr.get()));
}

class CsrTest : public ::testing::Test {
 protected:
  UniquePtr<EVP_PKEY> key_ = ValueOrDie(GenerateKey());
};

TEST_F(CsrTest, RoundTripCarriesTheClusterAndKey) {
  std::string pem = ValueOrDie(CreateCsrPem(key_.get(), "cluster-1"));
  VerifiedCsr csr = ValueOrDie(ParseAndVerifyCsrPem(pem));
  EXPECT_EQ(csr.cluster, "cluster-1");
  EXPECT_EQ(csr.key_type, KeyType::kEcdsaP256);
}

TEST_F(CsrTest, P256KeyOffTheCurveIsRefused) {
  UniquePtr<X509_REQ> request = ValueOrDie(CreateCsr(key_.get(), "cluster-1"));
  unsigned char* der_bytes = nullptr;
  int length = i2d_X509_REQ(request.get(), &der_bytes);
  ASSERT_GT(length, 0);
  std::string der(reinterpret_cast<char*>(der_bytes), static_cast<size_t>(length));
  OPENSSL_free(der_bytes);
  // A P-256 SubjectPublicKeyInfo ends with the point, uncompressed: 04 || X || Y.
  unsigned char* spki_bytes = nullptr;
  int spki_length = i2d_PUBKEY(key_.get(), &spki_bytes);
  ASSERT_GT(spki_length, 65);
  std::string point(reinterpret_cast<char*>(spki_bytes) + spki_length - 65, 65);
  OPENSSL_free(spki_bytes);
  size_t at = der.find(point);
  ASSERT_NE(at, std::string::npos);
  der[at + 64] ^= 0x01;  // change Y: (X, Y') is not on the curve

  absl::StatusOr<VerifiedCsr> csr = VerifyCsrDer(der);
  ASSERT_FALSE(csr.ok());
  EXPECT_THAT(csr.status().message(), ::testing::AnyOf(HasSubstr("not a valid point on the curve"),
                                                       HasSubstr("no usable public key")));
}

TEST_F(CsrTest, RsaAndP384KeysAreAccepted) {
  for (KeyType type : {KeyType::kRsa2048, KeyType::kEcdsaP384}) {
    UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey(type));
    VerifiedCsr csr = ValueOrDie(ParseAndVerifyCsrPem(ValueOrDie(CreateCsrPem(key.get(), "c"))));
    EXPECT_EQ(csr.key_type, type);
  }
}

TEST_F(CsrTest, BadClusterNameIsRefusedWhenBuilding) {
  auto csr = CreateCsrPem(key_.get(), "Not_A_Label");
  EXPECT_THAT(csr, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(csr.status().message(), HasSubstr("DNS label"));
}

TEST_F(CsrTest, TamperedSignatureIsRefused) {
  UniquePtr<X509_REQ> csr = ValueOrDie(CreateCsr(key_.get(), "cluster-1"));
  uint8_t* der = nullptr;
  int length = i2d_X509_REQ(csr.get(), &der);
  ASSERT_GT(length, 0);
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  bytes[bytes.size() - 1] ^= 0x01;  // last byte of the signature value
  const uint8_t* cursor = reinterpret_cast<const uint8_t*>(bytes.data());
  UniquePtr<X509_REQ> tampered(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(bytes.size())));
  ASSERT_TRUE(tampered);
  auto verified = VerifyCsr(tampered.get());
  EXPECT_THAT(verified, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(verified.status().message(), HasSubstr("signature does not verify"));
}

TEST_F(CsrTest, CaRequestIsRefused) {
  std::string pem = CsrWithExtensions(
      key_.get(), "c", {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_subject_alt_name, "DNS:c"}});
  auto csr = ParseAndVerifyCsrPem(pem);
  EXPECT_THAT(csr, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(csr.status().message(), HasSubstr("CA:TRUE"));
}

TEST_F(CsrTest, CaFalseAndOtherExtensionsAreIgnored) {
  std::string pem = CsrWithExtensions(key_.get(), "c",
                                      {{NID_basic_constraints, "CA:FALSE"},
                                       {NID_key_usage, "keyCertSign"},
                                       {NID_subject_alt_name, "DNS:c"}});
  EXPECT_EQ(ValueOrDie(ParseAndVerifyCsrPem(pem)).cluster, "c");
}

TEST_F(CsrTest, SubjectAltNamesMustBeExactlyOneDnsLabel) {
  struct Case {
    std::vector<std::pair<int, std::string>> extensions;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{}, "exactly one subject alternative name"},
      {{{NID_subject_alt_name, "DNS:c,DNS:d"}}, "exactly one subject alternative name"},
      {{{NID_subject_alt_name, "IP:10.0.0.1"}}, "not a DNS name"},
      {{{NID_subject_alt_name, "DNS:c.example.com"}}, "not a DNS label"},
      {{{NID_subject_alt_name, "DNS:*"}}, "not a DNS label"},
  };
  for (const Case& c : cases) {
    auto csr = ParseAndVerifyCsrPem(CsrWithExtensions(key_.get(), "c", c.extensions));
    EXPECT_THAT(csr, StatusIs(absl::StatusCode::kInvalidArgument)) << c.expected;
    EXPECT_THAT(csr.status().message(), HasSubstr(c.expected));
  }
}

TEST_F(CsrTest, CommonNameMustMatchTheDnsName) {
  auto csr = ParseAndVerifyCsrPem(
      CsrWithExtensions(key_.get(), "other", {{NID_subject_alt_name, "DNS:c"}}));
  EXPECT_THAT(csr.status().message(), HasSubstr("differs from its DNS name"));
}

TEST_F(CsrTest, WeakRsaKeyIsRefused) {
  UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nullptr));
  ASSERT_EQ(EVP_PKEY_keygen_init(ctx.get()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 1024), 1);
  EVP_PKEY* raw = nullptr;
  ASSERT_EQ(EVP_PKEY_keygen(ctx.get(), &raw), 1);
  UniquePtr<EVP_PKEY> weak(raw);
  auto csr = ParseAndVerifyCsrPem(
      CsrWithExtensions(weak.get(), "c", {{NID_subject_alt_name, "DNS:c"}}));
  EXPECT_THAT(csr, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(csr.status().message(), HasSubstr("1024 bits"));
  EXPECT_FALSE(CreateCsr(weak.get(), "c").ok());
}

TEST_F(CsrTest, GarbageTruncatedAndOversizeInputAreRefused) {
  std::string pem = ValueOrDie(CreateCsrPem(key_.get(), "c"));
  EXPECT_THAT(ParseAndVerifyCsrPem("hello"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseAndVerifyCsrPem(pem.substr(0, pem.size() / 2)), StatusIs(absl::StatusCode::kInvalidArgument));
  auto oversize = ParseAndVerifyCsrPem(std::string(kMaxPemObjectBytes + 1, 'A'));
  EXPECT_THAT(oversize.status().message(), HasSubstr("over the limit"));
  EXPECT_THAT(ParseAndVerifyCsrPem("").status().message(), HasSubstr("empty"));
}

TEST_F(CsrTest, SignatureByAnotherKeyIsRefused) {
  UniquePtr<EVP_PKEY> other = ValueOrDie(GenerateKey());
  UniquePtr<X509_REQ> csr = ValueOrDie(CreateCsr(key_.get(), "c"));
  ASSERT_EQ(X509_REQ_sign(csr.get(), other.get(), EVP_sha256()) > 0, true);  // key_ inside, other signs
  auto verified = ParseAndVerifyCsrPem(ValueOrDie(CsrToPem(csr.get())));
  EXPECT_THAT(verified.status().message(), HasSubstr("signature does not verify"));
}

TEST_F(CsrTest, PemLabelsAreChecked) {
  std::string pem = ValueOrDie(CreateCsrPem(key_.get(), "c"));
  std::string old_label = pem;
  old_label.replace(old_label.find("BEGIN CERTIFICATE REQUEST"), 25, "BEGIN NEW CERTIFICATE REQUEST");
  old_label.replace(old_label.find("END CERTIFICATE REQUEST"), 23, "END NEW CERTIFICATE REQUEST");
  EXPECT_EQ(ValueOrDie(ParseAndVerifyCsrPem(old_label)).cluster, "c");

  testing::TestPki pki = testing::TestPki::Make();
  auto certificate = ParseAndVerifyCsrPem(pki.intermediate->certificate_pem());
  EXPECT_THAT(certificate.status().message(), HasSubstr("found BEGIN CERTIFICATE"));
  EXPECT_THAT(ParseAndVerifyCsrPem(pem + pem).status().message(), HasSubstr("exactly one"));
}

TEST_F(CsrTest, MalformedDerIsRefused) {
  UniquePtr<X509_REQ> csr = ValueOrDie(CreateCsr(key_.get(), "c"));
  uint8_t* der = nullptr;
  int length = i2d_X509_REQ(csr.get(), &der);
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  EXPECT_EQ(ValueOrDie(VerifyCsrDer(bytes)).cluster, "c");
  EXPECT_THAT(VerifyCsrDer(bytes + '\0').status().message(), HasSubstr("malformed"));
  EXPECT_THAT(VerifyCsrDer(bytes.substr(0, bytes.size() - 1)).status().message(),
              HasSubstr("malformed"));
  EXPECT_THAT(VerifyCsrDer(""), StatusIs(absl::StatusCode::kInvalidArgument));
  // Every single-byte corruption is refused or still names the same cluster; none crashes.
  int refused = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      std::string corrupt = bytes;
      corrupt[i] = static_cast<char>(corrupt[i] ^ flip);
      auto verified = VerifyCsrDer(corrupt);
      if (verified.ok()) {
        EXPECT_EQ(verified->cluster, "c") << "byte " << i;
      } else {
        EXPECT_THAT(verified, StatusIs(absl::StatusCode::kInvalidArgument)) << "byte " << i;
        refused++;
      }
    }
  }
  EXPECT_GT(refused, static_cast<int>(bytes.size()) * 2);
}

}  // namespace
}  // namespace relay::pki
