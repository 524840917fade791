#include "pki/rotation.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pki/testing.h"

namespace relay::pki {
namespace {

using ::relay::pki::testing::ReferenceTime;
using ::relay::pki::testing::ValueOrDie;
using ::relay::testing::StatusIs;

CertificateInfo CertLasting(absl::Duration lifetime, std::string serial = "0A") {
  CertificateInfo info;
  info.not_before = ReferenceTime();
  info.not_after = ReferenceTime() + lifetime;
  info.serial_hex = std::move(serial);
  return info;
}

JitterSource Fixed(double value) {
  return [value](const CertificateInfo&) { return value; };
}

TEST(RenewAtTest, RatioIsTheShareOfLifetimeLeft) {
  CertificateInfo info = CertLasting(absl::Hours(100));
  EXPECT_EQ(ValueOrDie(RenewAt(info, 0.5, Fixed(0))), ReferenceTime() + absl::Hours(50));
  EXPECT_EQ(ValueOrDie(RenewAt(info, 0.2, Fixed(0))), ReferenceTime() + absl::Hours(80));
}

TEST(RenewAtTest, JitterStaysInsideATenthOfTheGracePeriod) {
  CertificateInfo info = CertLasting(absl::Hours(100));
  // Grace is 50 h; jitter moves renewal earlier by at most 5 h.
  EXPECT_EQ(ValueOrDie(RenewAt(info, 0.5, Fixed(0.5))), ReferenceTime() + absl::Hours(47.5));
  absl::Time latest_jitter = ValueOrDie(RenewAt(info, 0.5, Fixed(0.999999)));
  EXPECT_GT(latest_jitter, ReferenceTime() + absl::Hours(45));
  // A broken source cannot push renewal outside the window.
  EXPECT_EQ(ValueOrDie(RenewAt(info, 0.5, Fixed(7))), ReferenceTime() + absl::Hours(50));
}

TEST(RenewAtTest, RatioOutsideZeroOneIsRefused) {
  CertificateInfo info = CertLasting(absl::Hours(1));
  for (double ratio : {0.0, 1.0, -0.5, 1.5}) {
    auto at = RenewAt(info, ratio);
    EXPECT_THAT(at, StatusIs(absl::StatusCode::kInvalidArgument)) << ratio;
  }
}

TEST(SerialJitterTest, SameCertificateSameDrawAndSpreadAcrossCertificates) {
  CertificateInfo info = CertLasting(absl::Hours(1), "4F3A");
  EXPECT_EQ(SerialJitter(info), SerialJitter(info));
  double sum = 0;
  double low = 1, high = 0;
  constexpr int kCount = 2000;
  for (int i = 0; i < kCount; ++i) {
    double draw = SerialJitter(CertLasting(absl::Hours(1), absl::StrCat(i * 7919)));
    ASSERT_GE(draw, 0);
    ASSERT_LT(draw, 1);
    sum += draw;
    low = std::min(low, draw);
    high = std::max(high, draw);
  }
  EXPECT_NEAR(sum / kCount, 0.5, 0.03);
  EXPECT_LT(low, 0.01);
  EXPECT_GT(high, 0.99);
}

TEST(SerialJitterTest, DefaultSourceKeepsRenewalInsideTheWindow) {
  testing::TestPki pki = testing::TestPki::Make();
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(pki.intermediate->Issue(
      key.get(), ClientSpec("c", ReferenceTime(), absl::Seconds(30))));
  CertificateInfo info = ValueOrDie(InspectCertificate(leaf.get()));
  absl::Time at = ValueOrDie(RenewAt(info, 0.5));
  absl::Duration grace = info.Lifetime() * 0.5;
  EXPECT_LE(at, info.not_after - grace);
  EXPECT_GE(at, info.not_after - grace * 1.1);
}

}  // namespace
}  // namespace relay::pki
