#include "mgmt/management_pki.h"

#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "secrets/directory_store.h"

namespace relay::mgmt {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kNs[] = "gloo-mesh";
const absl::Time kNow = absl::FromUnixSeconds(1796216400);  // 2026-12-02T13:40:00Z

class ManagementPkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *secrets::DirectorySecretStore::Create(relay::testing::MakeTestDir("pki"));
  }

  std::vector<std::string> Names() { return *store_->List(kNs); }

  std::unique_ptr<secrets::DirectorySecretStore> store_;
  ManagementPkiOptions options_;
};

TEST_F(ManagementPkiTest, FirstStartCreatesTheFourSecretsAndTheSecondKeepsThem) {
  absl::StatusOr<ManagementPki> first = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(first->created,
              UnorderedElementsAre("gloo-mesh/relay-root-tls-secret", "gloo-mesh/relay-tls-signing-secret",
                                   "gloo-mesh/relay-server-tls-secret", "gloo-mesh/relay-identity-token-secret"));
  EXPECT_EQ(first->token.size(), 43u);
  ASSERT_NE(first->signer, nullptr);

  absl::StatusOr<ManagementPki> second = EnsureManagementPki(*store_, options_, kNow + absl::Hours(1));
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(second->created, IsEmpty());
  EXPECT_EQ(second->token, first->token);
  EXPECT_EQ(second->root_bundle_pem, first->root_bundle_pem);
  EXPECT_EQ(second->server_certificate.serial_hex, first->server_certificate.serial_hex);
}

// Anyone holding the shared token may register clusters: a short one stops start-up,
// and nothing is created around it.
TEST_F(ManagementPkiTest, ShortSharedTokenStopsStartUpAndNothingIsWritten) {
  ASSERT_THAT(store_->Put(kNs, "relay-identity-token-secret", {{"token", "x"}}), IsOk());
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_FALSE(pki.ok());
  EXPECT_THAT(pki, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(pki.status().message(), HasSubstr("relay-identity-token-secret"));
  EXPECT_THAT(pki.status().message(), HasSubstr("at least 43"));
  EXPECT_THAT(Names(), ElementsAre("relay-identity-token-secret"));
}

TEST_F(ManagementPkiTest, ExpiredServerCertificateIsReissuedAtStartUp) {
  options_.server_lifetime = absl::Hours(1);
  absl::StatusOr<ManagementPki> first = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_THAT(first, IsOk());
  absl::Time later = kNow + absl::Hours(2);
  absl::StatusOr<ManagementPki> second = EnsureManagementPki(*store_, options_, later);
  ASSERT_THAT(second, IsOk());
  EXPECT_NE(second->server_certificate.serial_hex, first->server_certificate.serial_hex);
  EXPECT_GT(second->server_certificate.not_after, later);
  EXPECT_THAT(second->created, ElementsAre("gloo-mesh/relay-server-tls-secret"));
  // The stored secret is the new one.
  auto stored = pki::ParseCertificateChainPem((*store_->Get(kNs, "relay-server-tls-secret"))["tls.crt"]);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(pki::SerialHex((*stored)[0].get()), second->server_certificate.serial_hex);
}

// Down past the intermediate's expiry (the root still valid): a new intermediate under
// the root and a server certificate under it; the token and the root are kept.
TEST_F(ManagementPkiTest, AnExpiredIntermediateIsReplacedAtStartUp) {
  options_.intermediate_lifetime = absl::Hours(10);
  options_.server_lifetime = absl::Hours(5);
  absl::StatusOr<ManagementPki> first = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_THAT(first, IsOk());
  const std::string old_intermediate = *pki::CertificateToPem(first->signer->certificate());
  const absl::Time later = kNow + absl::Hours(11);
  absl::StatusOr<ManagementPki> second = EnsureManagementPki(*store_, options_, later);
  ASSERT_THAT(second, IsOk());
  EXPECT_NE(*pki::CertificateToPem(second->signer->certificate()), old_intermediate);
  EXPECT_EQ(second->root_bundle_pem, first->root_bundle_pem);
  EXPECT_EQ(second->token, first->token);
  EXPECT_GT(second->server_certificate.not_after, later);
  // It verifies under the root, as stored.
  auto stored = *store_->Get(kNs, "relay-tls-signing-secret");
  auto chain = *pki::ParseCertificateChainPem(stored["tls.crt"]);
  auto roots = *pki::ParseCertificateChainPem(first->root_bundle_pem);
  EXPECT_THAT(pki::VerifyChain(chain[0].get(), {}, pki::Borrow(roots), later), IsOk());
}

// An expired root stops start-up with the recovery procedure, and writes nothing.
TEST_F(ManagementPkiTest, AnExpiredRootStopsStartUpWithTheRecovery) {
  options_.root_lifetime = absl::Hours(10);
  options_.intermediate_lifetime = absl::Hours(5);
  options_.server_lifetime = absl::Hours(2);
  ASSERT_THAT(EnsureManagementPki(*store_, options_, kNow), IsOk());
  auto before = *store_->Get(kNs, "relay-tls-signing-secret");
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(*store_, options_, kNow + absl::Hours(11));
  EXPECT_THAT(pki, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("root CA expired")));
  EXPECT_THAT(pki.status().message(), HasSubstr("Expired root"));
  EXPECT_THAT(pki.status().message(), HasSubstr("relayctl secrets export"));
  EXPECT_EQ(*store_->Get(kNs, "relay-tls-signing-secret"), before);
}

// A rotation's secret: a new intermediate under the root, the retired ones beside it;
// read back, both are there; without the root key, the error says what to do.
TEST_F(ManagementPkiTest, MakeIntermediateKeepsTheRetiredOnes) {
  absl::StatusOr<ManagementPki> first = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_THAT(first, IsOk());
  const std::string old_pem = first->signer->certificate_pem();
  absl::StatusOr<NewIntermediate> made = MakeIntermediate(*store_, options_, old_pem, kNow + absl::Hours(1));
  ASSERT_THAT(made, IsOk());
  ASSERT_THAT(store_->Put(kNs, "relay-tls-signing-secret", made->secret), IsOk());
  absl::StatusOr<StoredSigningCa> read = ReadSigningCa(*store_, options_, kNow + absl::Hours(1));
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(read->issuer->certificate_pem(), made->issuer->certificate_pem());
  ASSERT_EQ(read->retired.size(), 1u);
  EXPECT_EQ(*pki::CertificateToPem(read->retired[0].get()), old_pem);
  // A restart reads the retired one too.
  absl::StatusOr<ManagementPki> restarted = EnsureManagementPki(*store_, options_, kNow + absl::Hours(1));
  ASSERT_THAT(restarted, IsOk());
  EXPECT_EQ(restarted->retired_intermediates.size(), 1u);

  auto root = *store_->Get(kNs, "relay-root-tls-secret");
  root.erase("tls.key");
  ASSERT_THAT(store_->Put(kNs, "relay-root-tls-secret", root), IsOk());
  EXPECT_THAT(MakeIntermediate(*store_, options_, "", kNow), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                                      HasSubstr("no tls.key")));
}

// Without the signing CA the server cannot replace an expired server certificate: that
// still stops start-up, naming the secret.
TEST_F(ManagementPkiTest, ExpiredServerCertificateWithoutASigningCaStopsStartUp) {
  options_.server_lifetime = absl::Hours(1);
  ASSERT_THAT(EnsureManagementPki(*store_, options_, kNow), IsOk());
  ASSERT_THAT(store_->Delete(kNs, "relay-tls-signing-secret"), IsOk());
  options_.values.disable_ca = true;
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(*store_, options_, kNow + absl::Hours(2));
  ASSERT_FALSE(pki.ok());
  EXPECT_THAT(pki.status().message(), HasSubstr("relay-server-tls-secret"));
}

// A root that went missing while the signing secret stayed: the new root would not be
// the intermediate's issuer, so start-up stops, and no new root is written first.
TEST_F(ManagementPkiTest, MissingRootWithAPresentSigningSecretWritesNothing) {
  ASSERT_THAT(EnsureManagementPki(*store_, options_, kNow), IsOk());
  ASSERT_THAT(store_->Delete(kNs, "relay-root-tls-secret"), IsOk());
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_FALSE(pki.ok());
  EXPECT_THAT(pki.status().message(), HasSubstr("relay-tls-signing-secret"));
  EXPECT_THAT(pki.status().message(), HasSubstr("restore the root secret"));
  EXPECT_THAT(Names(), UnorderedElementsAre("relay-identity-token-secret", "relay-server-tls-secret",
                                            "relay-tls-signing-secret"));
}

// Another server starting at the same moment: it creates every secret between this
// server's read of the root (absent) and its read of the signing secret.
class AnotherServerBetweenReads final : public secrets::SecretStore {
 public:
  AnotherServerBetweenReads(secrets::SecretStore& store, std::function<void()> other_server)
      : store_(store), other_server_(std::move(other_server)) {}
  absl::StatusOr<secrets::SecretData> Get(absl::string_view ns, absl::string_view name) override {
    if (name == "relay-tls-signing-secret" && other_server_) std::exchange(other_server_, nullptr)();
    return store_.Get(ns, name);
  }
  absl::Status Put(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return store_.Put(ns, name, data);
  }
  absl::Status Create(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return store_.Create(ns, name, data);
  }
  absl::Status Delete(absl::string_view ns, absl::string_view name) override { return store_.Delete(ns, name); }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override { return store_.List(ns); }
  std::unique_ptr<secrets::SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                              std::function<void()> on_change) override {
    return store_.Watch(ns, name, std::move(on_change));
  }

 private:
  secrets::SecretStore& store_;
  std::function<void()> other_server_;
};

TEST_F(ManagementPkiTest, ARootCreatedByAnotherServerDuringStartUpIsTakenNotRefused) {
  std::string other_root;
  AnotherServerBetweenReads racing(*store_, [&] {
    absl::StatusOr<ManagementPki> other = EnsureManagementPki(*store_, options_, kNow);
    ASSERT_THAT(other, IsOk());
    other_root = other->root_bundle_pem;
  });
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(racing, options_, kNow);
  ASSERT_THAT(pki, IsOk());
  ASSERT_FALSE(other_root.empty());
  EXPECT_EQ(pki->root_bundle_pem, other_root);
  EXPECT_THAT(pki->created, IsEmpty());
}

TEST_F(ManagementPkiTest, BrokenSecretStopsStartUpNamingTheSecretAndKey) {
  ASSERT_THAT(EnsureManagementPki(*store_, options_, kNow), IsOk());
  secrets::SecretData signing = *store_->Get(kNs, "relay-tls-signing-secret");
  signing["tls.key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  ASSERT_THAT(store_->Put(kNs, "relay-tls-signing-secret", signing), IsOk());
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(*store_, options_, kNow);
  ASSERT_FALSE(pki.ok());
  EXPECT_THAT(pki.status().message(), HasSubstr("secret gloo-mesh/relay-tls-signing-secret key tls.key"));
}

}  // namespace
}  // namespace relay::mgmt
