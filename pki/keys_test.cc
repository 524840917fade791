#include "pki/keys.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/pem.h"
#include "pki/testing.h"

namespace relay::pki {
namespace {

using ::relay::pki::testing::ValueOrDie;
using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;

class KeysTest : public ::testing::TestWithParam<KeyType> {};

INSTANTIATE_TEST_SUITE_P(All, KeysTest,
                         ::testing::Values(KeyType::kEcdsaP256, KeyType::kEcdsaP384,
                                           KeyType::kRsa2048, KeyType::kRsa3072));

TEST_P(KeysTest, GeneratedKeyRoundTripsThroughPemAndKeepsItsType) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey(GetParam()));
  EXPECT_EQ(ValueOrDie(CheckKeyPolicy(key.get())), GetParam());
  std::string pem = ValueOrDie(PrivateKeyToPem(key.get()));
  EXPECT_THAT(pem, HasSubstr("BEGIN PRIVATE KEY"));
  UniquePtr<EVP_PKEY> parsed = ValueOrDie(ParsePrivateKeyPem(pem));
  EXPECT_EQ(ValueOrDie(CheckKeyPolicy(parsed.get())), GetParam());
  EXPECT_EQ(ValueOrDie(PrivateKeyToPem(parsed.get())), pem);
}

TEST(KeyTypeTest, NamesParseAndUnknownNamesSayWhatIsAccepted) {
  EXPECT_EQ(ValueOrDie(ParseKeyType("")), KeyType::kEcdsaP256);
  EXPECT_EQ(ValueOrDie(ParseKeyType("rsa-4096")), KeyType::kRsa4096);
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa2048,
                       KeyType::kRsa3072, KeyType::kRsa4096}) {
    EXPECT_EQ(ValueOrDie(ParseKeyType(KeyTypeName(type))), type);
  }
  auto bad = ParseKeyType("dsa");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(bad.status().message(), HasSubstr("ecdsa-p256"));
}

TEST(KeyMatchTest, KeyFromAnotherPairIsReported) {
  testing::TestPki pki = testing::TestPki::Make();
  UniquePtr<EVP_PKEY> other = ValueOrDie(GenerateKey());
  absl::Status status = CheckKeyMatchesCertificate(pki.root.get(), other.get());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(status.message(), HasSubstr("does not match"));
  EXPECT_THAT(CheckKeyMatchesCertificate(pki.root.get(), pki.root_key.get()), IsOk());
}

}  // namespace
}  // namespace relay::pki
