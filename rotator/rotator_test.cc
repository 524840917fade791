#include "rotator/rotator.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/pem.h"
#include "pki/testing.h"
#include "secrets/directory_store.h"

namespace relay::rotator {
namespace {

using ::testing::HasSubstr;
using pki::testing::TestPki;
using pki::testing::ValueOrDie;

constexpr char kNs[] = "gloo-mesh";

// The value of an unlabelled gauge in Prometheus text, or -1 when it has no sample.
double Gauge(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return -1;
}

class RotatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp", "/rot.XXXXXX");
    store_ = *secrets::DirectorySecretStore::Create(mkdtemp(tmpl.data()));
    ASSERT_TRUE(store_->Put(kNs, "relay-root-tls-secret", {{"ca.crt", ValueOrDie(pki::CertificateToPem(pki_.root.get()))}}).ok());
    options_.cluster = "east";
  }

  // A client secret issued by the test CA for `cluster`, expiring at `not_after`.
  secrets::SecretData ClientSecret(const std::string& cluster, absl::Time* not_after) {
    pki::UniquePtr<EVP_PKEY> key = ValueOrDie(pki::GenerateKey());
    pki::UniquePtr<X509> leaf =
        ValueOrDie(pki_.intermediate->Issue(key.get(), pki::ClientSpec(cluster, now_, absl::Hours(1))));
    *not_after = ValueOrDie(pki::InspectCertificate(leaf.get())).not_after;
    return {{"tls.crt", ValueOrDie(pki::CertificateToPem(leaf.get())) + pki_.intermediate->certificate_pem()},
            {"tls.key", ValueOrDie(pki::PrivateKeyToPem(key.get()))},
            {"ca.crt", ValueOrDie(pki::CertificateToPem(pki_.root.get()))}};
  }

  absl::Time now_ = absl::Now();
  TestPki pki_ = TestPki::Make(now_ - absl::Hours(1));
  std::unique_ptr<secrets::DirectorySecretStore> store_;
  RotatorOptions options_;
  Metrics metrics_;
};

// Issue 12.2 and 12.14: a client secret the agent cannot use (here: another cluster's
// certificate) makes the rotator unhealthy with the reason, and its expiry gauge never
// shows that certificate; a usable one clears both.
TEST_F(RotatorTest, AnUnusableSecretIsUnhealthyAndNotShownAsTheCertificateInUse) {
  absl::Time west_expiry;
  ASSERT_TRUE(store_->Put(kNs, "relay-client-tls-secret", ClientSecret("west", &west_expiry)).ok());
  Rotator rotator(options_, store_.get(), &metrics_);
  std::string problem = rotator.HealthProblem();
  EXPECT_THAT(problem, HasSubstr("unusable"));
  EXPECT_THAT(problem, HasSubstr("\"west\""));
  EXPECT_THAT(problem, HasSubstr("relayctl register"));  // no token here
  EXPECT_EQ(Gauge(metrics_.Render(), "relay_client_certificate_expiry_timestamp_seconds"), -1);

  absl::Time east_expiry;
  ASSERT_TRUE(store_->Put(kNs, "relay-client-tls-secret", ClientSecret("east", &east_expiry)).ok());
  EXPECT_EQ(rotator.HealthProblem(), "");
  EXPECT_EQ(Gauge(metrics_.Render(), "relay_client_certificate_expiry_timestamp_seconds"),
            absl::ToUnixSeconds(east_expiry));
}

// No client secret at all is the agent's first contact: healthy, nothing to do.
TEST_F(RotatorTest, NoSecretYetIsHealthyAndWaitsForTheAgent) {
  Rotator rotator(options_, store_.get(), &metrics_);
  EXPECT_EQ(rotator.HealthProblem(), "");
  EXPECT_TRUE(rotator.RunOnce().ok());
}

}  // namespace
}  // namespace relay::rotator
