#include "state/secret_cipher.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::MakeTestDir;
using ::relay::testing::StatusIs;
using ::relay::testing::WriteFileBytes;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kKey(32, 'k');
const std::string kOtherKey(32, 'o');

TEST(SecretCipherTest, OpensWhatItSealed) {
  absl::StatusOr<SecretCipher> cipher = SecretCipher::FromKey(kKey);
  ASSERT_THAT(cipher, IsOk());
  absl::StatusOr<std::string> sealed = cipher->Seal("-----BEGIN PRIVATE KEY-----", "/relay/s/ns/tls");
  ASSERT_THAT(sealed, IsOk());
  EXPECT_TRUE(SecretCipher::IsSealed(*sealed));
  EXPECT_THAT(*sealed, Not(HasSubstr("PRIVATE KEY")));
  absl::StatusOr<std::string> opened = cipher->Open(*sealed, "/relay/s/ns/tls");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(*opened, "-----BEGIN PRIVATE KEY-----");
}

TEST(SecretCipherTest, EverySealHasItsOwnNonce) {
  SecretCipher cipher = *SecretCipher::FromKey(kKey);
  EXPECT_NE(*cipher.Seal("same", "k"), *cipher.Seal("same", "k"));
}

TEST(SecretCipherTest, AValueMovedToAnotherKeyDoesNotOpen) {
  SecretCipher cipher = *SecretCipher::FromKey(kKey);
  std::string sealed = *cipher.Seal("token", "/relay/s/ns/a");
  EXPECT_THAT(cipher.Open(sealed, "/relay/s/ns/b"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("moved")));
}

TEST(SecretCipherTest, AnAlteredValueDoesNotOpen) {
  SecretCipher cipher = *SecretCipher::FromKey(kKey);
  std::string sealed = *cipher.Seal("token", "k");
  for (size_t at : {sealed.size() - 1, sealed.size() - 20, sealed.size() - 5}) {
    std::string altered = sealed;
    altered[at] ^= 1;
    EXPECT_THAT(cipher.Open(altered, "k"), StatusIs(absl::StatusCode::kDataLoss)) << "byte " << at;
  }
  EXPECT_THAT(cipher.Open(sealed.substr(0, sealed.size() - 20), "k"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(SecretCipherTest, AnotherKeyIsNamedNotCalledDamage) {
  SecretCipher cipher = *SecretCipher::FromKey(kKey);
  SecretCipher other = *SecretCipher::FromKey(kOtherKey);
  EXPECT_NE(cipher.key_id(), other.key_id());
  std::string sealed = *other.Seal("token", "k");
  EXPECT_THAT(cipher.Open(sealed, "k"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                 AllOf(HasSubstr(other.key_id()), HasSubstr(cipher.key_id()))));
}

TEST(SecretCipherTest, APlainValueIsRefusedWithAdvice) {
  SecretCipher cipher = *SecretCipher::FromKey(kKey);
  EXPECT_FALSE(SecretCipher::IsSealed("plain"));
  EXPECT_THAT(cipher.Open("plain", "k"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--state_encryption_key_file")));
}

TEST(SecretCipherTest, ReadsRawAndBase64KeyFiles) {
  std::string dir = MakeTestDir("cipher");
  WriteFileBytes(dir + "/raw", kKey);
  WriteFileBytes(dir + "/base64", absl::Base64Escape(kKey) + "\n");
  absl::StatusOr<SecretCipher> raw = SecretCipher::FromKeyFile(dir + "/raw");
  absl::StatusOr<SecretCipher> base64 = SecretCipher::FromKeyFile(dir + "/base64");
  ASSERT_THAT(raw, IsOk());
  ASSERT_THAT(base64, IsOk());
  EXPECT_EQ(raw->key_id(), base64->key_id());
  absl::StatusOr<std::string> opened = base64->Open(*raw->Seal("x", "k"), "k");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(*opened, "x");
}

TEST(SecretCipherTest, ABadKeyFileSaysHowToMakeOne) {
  std::string dir = MakeTestDir("cipher-bad");
  WriteFileBytes(dir + "/short", "c2hvcnQ=\n");
  EXPECT_THAT(SecretCipher::FromKeyFile(dir + "/short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("head -c 32 /dev/urandom | base64")));
  EXPECT_THAT(SecretCipher::FromKeyFile(dir + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/missing")));
}

}  // namespace
}  // namespace relay::state
