#include "pki/pem.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/testing.h"

namespace relay::pki {
namespace {

using ::relay::pki::testing::TestPki;
using ::relay::pki::testing::ValueOrDie;
using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;

class PemTest : public ::testing::Test {
 protected:
  TestPki pki_ = TestPki::Make();
  std::string root_pem_ = ValueOrDie(CertificateToPem(pki_.root.get()));
  std::string intermediate_pem_ = pki_.intermediate->certificate_pem();
};

TEST_F(PemTest, CertificateRoundTrips) {
  UniquePtr<X509> parsed = ValueOrDie(ParseCertificatePem(root_pem_));
  EXPECT_EQ(SerialHex(parsed.get()), SerialHex(pki_.root.get()));
  EXPECT_EQ(ValueOrDie(CertificateToPem(parsed.get())), root_pem_);
}

TEST_F(PemTest, ChainKeepsOrderAndAllowsTextBetweenBlocks) {
  std::string bundle = intermediate_pem_ + "# root follows\n" + root_pem_ + "\n";
  std::vector<UniquePtr<X509>> chain = ValueOrDie(ParseCertificateChainPem(bundle));
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(SerialHex(chain[0].get()), SerialHex(pki_.intermediate->certificate()));
  EXPECT_EQ(SerialHex(chain[1].get()), SerialHex(pki_.root.get()));
  EXPECT_EQ(ValueOrDie(CertificateChainToPem(Borrow(chain))), intermediate_pem_ + root_pem_);
}

TEST_F(PemTest, SingleCertificateRefusesAChain) {
  auto parsed = ParseCertificatePem(intermediate_pem_ + root_pem_);
  EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(parsed.status().message(), HasSubstr("exactly one certificate"));
}

TEST_F(PemTest, TruncatedAndGarbageInputIsRefused) {
  std::string truncated = root_pem_.substr(0, root_pem_.size() - 40);
  EXPECT_THAT(ParseCertificatePem(truncated), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCertificatePem("not pem at all"), StatusIs(absl::StatusCode::kInvalidArgument));
  // A bundle whose second block is cut short is not silently shortened to the first.
  auto chain = ParseCertificateChainPem(intermediate_pem_ + truncated);
  EXPECT_THAT(chain, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(chain.status().message(), HasSubstr("after certificate 1"));
  std::string bad_base64 = root_pem_;
  bad_base64[40] = '!';
  EXPECT_FALSE(ParseCertificatePem(bad_base64).ok());
  EXPECT_FALSE(ParsePrivateKeyPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
  EXPECT_THAT(ParseCertificateChainPem("").status().message(), HasSubstr("empty"));
}

TEST_F(PemTest, ACertificateGivenAsAKeySaysNoKeyBlockIsThere) {
  EXPECT_THAT(ParsePrivateKeyPem(root_pem_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no -----BEGIN ... PRIVATE KEY----- line")));
  EXPECT_THAT(ParsePrivateKeyPem(root_pem_ + ValueOrDie(PrivateKeyToPem(pki_.root_key.get()))), IsOk());
}

TEST_F(PemTest, InputOverTheSizeLimitIsRefusedBeforeParsing) {
  std::string huge = root_pem_ + std::string(kMaxPemObjectBytes, '\n');
  auto parsed = ParseCertificatePem(huge);
  EXPECT_THAT(parsed.status().message(), HasSubstr("over the limit"));
  std::string many;
  for (size_t i = 0; i <= kMaxBundleCertificates; ++i) many += root_pem_;
  EXPECT_THAT(ParseCertificateChainPem(many).status().message(), HasSubstr("more than"));
  EXPECT_THAT(ParsePrivateKeyPem(std::string(kMaxPemObjectBytes + 1, 'x')).status().message(),
              HasSubstr("over the limit"));
}

TEST_F(PemTest, ErrorsNeverEchoKeyMaterial) {
  std::string key_pem = ValueOrDie(PrivateKeyToPem(pki_.root_key.get()));
  std::string broken = key_pem.substr(0, key_pem.size() / 2);
  auto parsed = ParsePrivateKeyPem(broken);
  ASSERT_FALSE(parsed.ok());
  std::string body_line = key_pem.substr(key_pem.find('\n') + 1, 32);
  EXPECT_EQ(parsed.status().message().find(body_line), std::string::npos);
}

}  // namespace
}  // namespace relay::pki
