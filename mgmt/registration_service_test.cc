// The registration service in this process (service_testing.h): real TLS and CSRs, the
// state in memory.
#include "mgmt/registration_service.h"

#include "absl/strings/str_cat.h"
#include "common/refusal.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mgmt/service_testing.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "tokens/bootstrap_tokens.h"

namespace relay::mgmt {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;
using testing::ServicesUnderTest;

class RegistrationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    services_ = ServicesUnderTest::Start();
    ASSERT_NE(services_, nullptr);
  }
  double Refused(const std::string& reason) {
    return services_->core().metrics().certificates_refused.Value({reason});
  }
  std::unique_ptr<ServicesUnderTest> services_;
};

TEST_F(RegistrationServiceTest, RegisterIssuesACertificateForTheClusterAndRecordsIt) {
  ServicesUnderTest::Registered east = services_->Register("east");
  ASSERT_THAT(east.status, IsOk());
  auto chain = pki::ParseCertificateChainPem(east.credentials.chain_pem);
  ASSERT_THAT(chain, IsOk());
  pki::CertificateInfo leaf = *pki::InspectCertificate((*chain)[0].get());
  EXPECT_THAT(leaf.dns_names, ::testing::ElementsAre("east"));
  EXPECT_EQ(leaf.serial_hex, east.credentials.serial);
  std::optional<ClusterRecord> record = services_->core().registry().Find("east");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->current_serial, east.credentials.serial);
  EXPECT_EQ(services_->core().metrics().certificates_issued.Value({"register"}), 1);
}

TEST_F(RegistrationServiceTest, BadRegistrationsGetTheirStatusAndNothingIsRecorded) {
  EXPECT_THAT(services_->Register("east", "wrong-token").status, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(Refused("bad_token"), 1);
  EXPECT_THAT(services_->Register("East_1", "", "east").status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Refused("bad_cluster_name"), 1);
  // The identity policy: the CSR names another cluster than the one asked for.
  ServicesUnderTest::Registered mismatch = services_->Register("east", "", "west");
  EXPECT_THAT(mismatch.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(mismatch.status.error_message(), HasSubstr("\"west\""));
  EXPECT_EQ(Refused("identity_mismatch"), 1);
  EXPECT_TRUE(services_->core().registry().List().empty());
}

// Register and Renew answer the same status for the same mistake (a CSR for a cluster
// the caller may not have).
TEST_F(RegistrationServiceTest, RenewFollowsTheSameIdentityPolicyAndPinsSerials) {
  ServicesUnderTest::Registered east = services_->Register("east");
  ASSERT_THAT(east.status, IsOk());
  ServicesUnderTest::Registered west = services_->Renew(east.credentials, "west");
  EXPECT_THAT(west.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(west.status.error_message(), HasSubstr("\"west\""));

  ServicesUnderTest::Registered renewed = services_->Renew(east.credentials, "east");
  ASSERT_THAT(renewed.status, IsOk());
  // Both are accepted until the new one is used; then the old one is refused, and says
  // the agent should register again.
  ASSERT_THAT(services_->Renew(renewed.credentials, "east").status, IsOk());
  ServicesUnderTest::Registered stale = services_->Renew(east.credentials, "east");
  EXPECT_THAT(stale.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(stale.refusal, kRefusalUnknownCertificate);
}

TEST_F(RegistrationServiceTest, ADeregisteredClusterIsRefusedWithTheKindOfRefusal) {
  ServicesUnderTest::Registered east = services_->Register("east");
  ASSERT_THAT(services_->core().registry().Deregister("east"), IsOk());
  ServicesUnderTest::Registered again = services_->Register("east");
  EXPECT_THAT(again.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(again.refusal, kRefusalDeregistered);
  ServicesUnderTest::Registered renew = services_->Renew(east.credentials, "east");
  EXPECT_THAT(renew.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(renew.refusal, kRefusalDeregistered);
}

// A bootstrap token is redeemed on the work queue (it waits on the store), once.
TEST_F(RegistrationServiceTest, ABootstrapTokenRegistersItsClusterOnce) {
  absl::StatusOr<std::string> token = services_->core().bootstrap_tokens().Create("east", absl::Hours(1), 1, absl::Now());
  ASSERT_THAT(token, IsOk());
  EXPECT_THAT(services_->Register("west", *token).status, StatusIs(absl::StatusCode::kPermissionDenied));
  ServicesUnderTest::Registered east = services_->Register("east", *token);
  ASSERT_THAT(east.status, IsOk());
  EXPECT_THAT(services_->Register("east", *token).status, StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace relay::mgmt
