#include "mgmt/signing_authority.h"

#include "common/status_matchers.h"
#include "gtest/gtest.h"
#include "pki/keys.h"
#include "pki/pem.h"

namespace relay::mgmt {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::unique_ptr<pki::Issuer> Intermediate(const pki::Issuer& root, absl::Time now, absl::Duration lifetime) {
  auto key = pki::GenerateKey();
  auto cert = root.Issue(key->get(), pki::IntermediateCaSpec("relay-signing-ca", now, lifetime));
  return *pki::Issuer::Create(*std::move(cert), *std::move(key), now);
}

pki::LeafSummary LeafOf(const pki::Issuer& issuer, absl::Time now) {
  auto key = pki::GenerateKey();
  auto leaf = issuer.Issue(key->get(), pki::ClientSpec("east", now, absl::Hours(1)));
  return *pki::SummarizeLeafPem(*pki::CertificateToPem(leaf->get()));
}

class SigningAuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = pki::GenerateKey();
    auto cert = pki::CreateSelfSignedCertificate(key->get(), pki::RootCaSpec("relay-root-ca", kNow, absl::Hours(24 * 365)));
    root_ = *pki::Issuer::Create(*std::move(cert), *std::move(key), kNow);
  }
  std::unique_ptr<pki::Issuer> root_;
};

// Rotation point: a sixth of the lifetime before expiry, or two client lifetimes when
// that is earlier.
TEST(IntermediateRotationDueTest, ASixthOfTheLifetimeOrTwoClientLifetimes) {
  pki::CertificateInfo info;
  info.not_before = kNow;
  info.not_after = kNow + absl::Hours(600);
  EXPECT_EQ(IntermediateRotationDue(info, absl::Hours(10)), kNow + absl::Hours(500));
  EXPECT_EQ(IntermediateRotationDue(info, absl::Hours(100)), kNow + absl::Hours(400));
}

TEST(ExpiryWarningLevelTest, ThirtySevenAndOneDays) {
  EXPECT_EQ(ExpiryWarningLevel(absl::Hours(24 * 31)), 0);
  EXPECT_EQ(ExpiryWarningLevel(absl::Hours(24 * 30)), 1);
  EXPECT_EQ(ExpiryWarningLevel(absl::Hours(24 * 7)), 2);
  EXPECT_EQ(ExpiryWarningLevel(absl::Hours(23)), 3);
  EXPECT_EQ(ExpiryWarningLevel(-absl::Hours(1)), 3);
}

// After a rotation, leaves of the old intermediate are still ours until it expires;
// new issuance uses the new one; a stranger's leaves never are.
TEST_F(SigningAuthorityTest, RetiredIntermediatesStayOursUntilTheyExpire) {
  SigningAuthority authority(Intermediate(*root_, kNow, absl::Hours(10)), {});
  std::shared_ptr<const pki::Issuer> first = authority.current();
  const pki::LeafSummary old_leaf = LeafOf(*first, kNow);
  authority.Replace(Intermediate(*root_, kNow, absl::Hours(20)), kNow + absl::Hours(1));
  std::shared_ptr<const pki::Issuer> second = authority.current();
  EXPECT_NE(second.get(), first.get());
  EXPECT_TRUE(authority.Issued(old_leaf));
  EXPECT_TRUE(authority.Issued(LeafOf(*second, kNow)));
  EXPECT_FALSE(authority.Issued(LeafOf(*Intermediate(*root_, kNow, absl::Hours(10)), kNow)));
  EXPECT_FALSE(authority.RetiredPem(kNow + absl::Hours(1)).empty());
  // Past the first one's expiry, a further rotation drops it.
  EXPECT_TRUE(authority.RetiredPem(kNow + absl::Hours(11)).empty());
  authority.Replace(Intermediate(*root_, kNow + absl::Hours(11), absl::Hours(10)), kNow + absl::Hours(11));
  EXPECT_FALSE(authority.Issued(old_leaf));
  EXPECT_TRUE(authority.Issued(LeafOf(*second, kNow)));  // the second one, retired, still ours
  EXPECT_FALSE(authority.RetiredPem(kNow + absl::Hours(11)).empty());
}

}  // namespace
}  // namespace relay::mgmt
