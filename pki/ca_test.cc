#include "pki/ca.h"

#include <openssl/crypto.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/certificate.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "pki/testing.h"

namespace relay::pki {
namespace {

using ::relay::pki::testing::ReferenceTime;
using ::relay::pki::testing::TestPki;
using ::relay::pki::testing::ValueOrDie;
using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class CaTest : public ::testing::TestWithParam<KeyType> {
 protected:
  CaTest() : pki_(TestPki::Make(ReferenceTime(), GetParam())) {}
  TestPki pki_;
};

INSTANTIATE_TEST_SUITE_P(KeyTypes, CaTest,
                         ::testing::Values(KeyType::kEcdsaP256, KeyType::kRsa2048),
                         [](const auto& info) {
                           std::string name = KeyTypeName(info.param);
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

TEST_P(CaTest, RootIsSelfSignedCaThatVerifiesItself) {
  CertificateInfo info = ValueOrDie(InspectCertificate(pki_.root.get()));
  EXPECT_TRUE(info.is_ca);
  EXPECT_EQ(info.subject, info.issuer);
  EXPECT_EQ(info.not_after - ReferenceTime(), absl::Hours(24 * 3650));
  EXPECT_THAT(VerifyChain(pki_.root.get(), {}, {pki_.root.get()}, ReferenceTime()), IsOk());
}

TEST_P(CaTest, ClientLeafHasTheClusterIdentityAndClientAuthOnly) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  absl::Time now = ReferenceTime() + absl::Hours(1);
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("cluster-1", now, absl::Hours(24 * 30))));
  CertificateInfo info = ValueOrDie(InspectCertificate(leaf.get()));
  EXPECT_FALSE(info.is_ca);
  EXPECT_EQ(info.common_name, "cluster-1");
  EXPECT_THAT(info.dns_names, ElementsAre("cluster-1"));
  EXPECT_EQ(info.serial_hex.size(), 32u);  // 128 random bits, top bits fixed to 01
  EXPECT_EQ(info.not_before, now - absl::Minutes(5));
  EXPECT_EQ(info.not_after, now + absl::Hours(24 * 30));
  EXPECT_THAT(CheckKeyMatchesCertificate(leaf.get(), key.get()), IsOk());

  std::vector<const X509*> intermediates = {pki_.intermediate->certificate()};
  EXPECT_THAT(VerifyChain(leaf.get(), intermediates, {pki_.root.get()}, now, Purpose::kClientAuth)
                  , IsOk());
  absl::Status as_server =
      VerifyChain(leaf.get(), intermediates, {pki_.root.get()}, now, Purpose::kServerAuth);
  EXPECT_FALSE(as_server.ok());
  EXPECT_THAT(as_server.message(), HasSubstr("purpose"));
}

// Root rotation: a holder of the old root A only verifies leaves under a new root B when
// the chain carries B cross-certified by A; a holder of B does without it.
TEST_P(CaTest, ACrossCertificateLetsHoldersOfTheOldRootVerifyTheNewOne) {
  const absl::Time now = ReferenceTime() + absl::Hours(1);
  TestPki next = TestPki::Make(now, GetParam());
  // A distinct name, as the server gives each new root.
  UniquePtr<EVP_PKEY> b_key = ValueOrDie(GenerateKey(GetParam()));
  UniquePtr<X509> b = ValueOrDie(CreateSelfSignedCertificate(b_key.get(), RootCaSpec("relay-root-ca 2", now, absl::Hours(24 * 3650))));
  X509_up_ref(b.get());
  std::unique_ptr<Issuer> b_issuer = ValueOrDie(Issuer::Create(UniquePtr<X509>(b.get()), std::move(b_key), now));
  UniquePtr<EVP_PKEY> intermediate_key = ValueOrDie(GenerateKey());
  UniquePtr<X509> intermediate =
      ValueOrDie(b_issuer->Issue(intermediate_key.get(), IntermediateCaSpec("relay-signing-ca", now, absl::Hours(24))));
  std::unique_ptr<Issuer> signer = ValueOrDie(Issuer::Create(std::move(intermediate), std::move(intermediate_key), now));
  UniquePtr<EVP_PKEY> leaf_key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(signer->Issue(leaf_key.get(), ClientSpec("east", now, absl::Hours(1))));

  UniquePtr<X509> cross = ValueOrDie(CrossCertify(*pki_.root_issuer, b.get(), now, absl::Hours(48)));
  EXPECT_TRUE(SameSubjectAndKey(cross.get(), b.get()));
  EXPECT_FALSE(SameSubjectAndKey(cross.get(), pki_.root.get()));
  EXPECT_TRUE(IsIssuedBy(pki_.root.get(), cross.get()));
  EXPECT_EQ(ValueOrDie(InspectCertificate(cross.get())).not_after, now + absl::Hours(48));

  const std::vector<const X509*> with_cross = {signer->certificate(), cross.get()};
  EXPECT_THAT(VerifyChain(leaf.get(), with_cross, {pki_.root.get()}, now, Purpose::kClientAuth), IsOk());
  EXPECT_THAT(VerifyChain(leaf.get(), with_cross, {b.get()}, now, Purpose::kClientAuth), IsOk());
  EXPECT_FALSE(VerifyChain(leaf.get(), {signer->certificate()}, {pki_.root.get()}, now, Purpose::kClientAuth).ok());
  // Once the cross-certificate expires, holders of A alone no longer verify the chain.
  EXPECT_FALSE(VerifyChain(leaf.get(), with_cross, {pki_.root.get()}, now + absl::Hours(49), Purpose::kClientAuth).ok());
  // Another root of the same name and another key is not the one vouched for.
  EXPECT_FALSE(SameSubjectAndKey(cross.get(), next.root.get()));
}

TEST_P(CaTest, SerialsAreRandom) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  std::set<std::string> serials;
  for (int i = 0; i < 20; ++i) {
    UniquePtr<X509> leaf = ValueOrDie(
        pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Hours(1))));
    serials.insert(SerialHex(leaf.get()));
  }
  EXPECT_EQ(serials.size(), 20u);
}

TEST_P(CaTest, ShortLifetimesAreBackdatedByATenth) {
  EXPECT_EQ(Backdate(absl::Seconds(30)), absl::Seconds(3));
  EXPECT_EQ(Backdate(absl::Minutes(20)), absl::Minutes(2));
  EXPECT_EQ(Backdate(absl::Hours(1)), absl::Minutes(5));
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Seconds(30))));
  CertificateInfo info = ValueOrDie(InspectCertificate(leaf.get()));
  EXPECT_EQ(info.not_before, ReferenceTime() - absl::Seconds(3));
  EXPECT_DOUBLE_EQ(info.FractionRemaining(ReferenceTime() + absl::Seconds(13.5)), 0.5);  // 33 s lifetime
}

TEST_P(CaTest, ServerCertificateMatchesItsNamesOnly) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> server = ValueOrDie(pki_.intermediate->Issue(
      key.get(), ServerSpec("gloo-mesh-mgmt-server.gloo-mesh",
                            {"gloo-mesh-mgmt-server.gloo-mesh", "localhost"},
                            {"127.0.0.1", "::1"}, ReferenceTime(), absl::Hours(24 * 365))));
  EXPECT_THAT(CheckHost(server.get(), "gloo-mesh-mgmt-server.gloo-mesh"), IsOk());
  EXPECT_THAT(CheckHost(server.get(), "127.0.0.1"), IsOk());
  EXPECT_THAT(CheckHost(server.get(), "::1"), IsOk());
  absl::Status other = CheckHost(server.get(), "evil.example.com");
  EXPECT_FALSE(other.ok());
  EXPECT_THAT(other.message(), HasSubstr("evil.example.com"));
  CertificateInfo info = ValueOrDie(InspectCertificate(server.get()));
  EXPECT_THAT(info.ip_addresses, ElementsAre("127.0.0.1", "::1"));
  EXPECT_THAT(VerifyChain(server.get(), {pki_.intermediate->certificate()}, {pki_.root.get()},
                          ReferenceTime(), Purpose::kServerAuth)
                  , IsOk());
}

TEST_P(CaTest, BadIpAddressIsRefused) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  auto cert = pki_.intermediate->Issue(
      key.get(), ServerSpec("s", {"s"}, {"300.1.1.1"}, ReferenceTime(), absl::Hours(1)));
  EXPECT_THAT(cert, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cert.status().message(), HasSubstr("300.1.1.1"));
}

TEST_P(CaTest, NonPositiveLifetimeIsRefused) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  auto cert = pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::ZeroDuration()));
  EXPECT_THAT(cert, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(CaTest, ChainThatDoesNotReachTheRootIsRefused) {
  TestPki other = TestPki::Make(ReferenceTime(), GetParam());
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      other.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Hours(1))));
  absl::Status status = VerifyChain(leaf.get(), {other.intermediate->certificate()},
                                    {pki_.root.get()}, ReferenceTime());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(status.message(), HasSubstr("does not verify"));
  // Missing intermediate: same answer.
  EXPECT_FALSE(VerifyChain(leaf.get(), {}, {other.root.get()}, ReferenceTime()).ok());
}

// A certificate checked on a machine whose clock is behind the issuer's: the message
// says "not yet valid" and by how much the clocks differ, not "does not chain".
TEST_P(CaTest, ClockSkewIsReportedAsSuchWithTheDifference) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  absl::Time issued = ReferenceTime() + absl::Hours(2);
  UniquePtr<X509> leaf = ValueOrDie(pki_.intermediate->Issue(key.get(), ClientSpec("c", issued, absl::Hours(1))));
  std::vector<const X509*> intermediates = {pki_.intermediate->certificate()};
  // The leaf starts 5 min before `issued` (backdated); this clock is 120 s behind that.
  absl::Status behind = VerifyChain(leaf.get(), intermediates, {pki_.root.get()}, issued - absl::Seconds(420),
                                    Purpose::kClientAuth);
  EXPECT_THAT(behind, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(behind.message(), HasSubstr("is not yet valid"));
  EXPECT_THAT(behind.message(), HasSubstr("the clocks differ by about 120 s"));
  EXPECT_THAT(behind.message(), Not(HasSubstr("does not verify")));
  absl::Status after = VerifyChain(leaf.get(), intermediates, {pki_.root.get()}, issued + absl::Hours(2),
                                   Purpose::kClientAuth);
  EXPECT_THAT(after.message(), HasSubstr("expired at"));
}

TEST_P(CaTest, IsIssuedByTellsTheDirectIssuer) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Hours(1))));
  EXPECT_TRUE(IsIssuedBy(pki_.intermediate->certificate(), leaf.get()));
  EXPECT_FALSE(IsIssuedBy(pki_.root.get(), leaf.get()));
  TestPki other = TestPki::Make(ReferenceTime(), GetParam());
  EXPECT_FALSE(IsIssuedBy(other.intermediate->certificate(), leaf.get()));
}

TEST_P(CaTest, LeafSummaryAgreesWithTheFullParse) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("cluster-7", ReferenceTime(), absl::Hours(2))));
  CertificateInfo full = ValueOrDie(InspectCertificate(leaf.get()));
  LeafSummary summary = ValueOrDie(SummarizeLeafPem(ValueOrDie(CertificateToPem(leaf.get()))));
  EXPECT_EQ(summary.serial_hex, full.serial_hex);
  EXPECT_EQ(summary.serial_hex, SerialHex(leaf.get()));
  EXPECT_EQ(summary.not_before, full.not_before);
  EXPECT_EQ(summary.not_after, full.not_after);
  EXPECT_THAT(summary.dns_names, ElementsAre("cluster-7"));
  EXPECT_TRUE(summary.client_auth);
  EXPECT_TRUE(NamesIssuer(pki_.intermediate->certificate(), summary));
  EXPECT_FALSE(NamesIssuer(pki_.root.get(), summary));
  // Same names, other keys: the authority key identifier tells them apart.
  TestPki other = TestPki::Make(ReferenceTime(), GetParam());
  EXPECT_FALSE(NamesIssuer(other.intermediate->certificate(), summary));

  UniquePtr<X509> server = ValueOrDie(pki_.intermediate->Issue(
      key.get(), ServerSpec("relay.example", {"relay.example"}, {}, ReferenceTime(), absl::Hours(2))));
  EXPECT_FALSE(ValueOrDie(SummarizeLeafPem(ValueOrDie(CertificateToPem(server.get())))).client_auth);
}

TEST_P(CaTest, LeafSummaryRefusesWhatIsNotACertificate) {
  EXPECT_FALSE(SummarizeLeafPem("").ok());
  EXPECT_FALSE(SummarizeLeafPem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").ok());
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  EXPECT_FALSE(SummarizeLeafPem(ValueOrDie(PrivateKeyToPem(key.get()))).ok());
  // A certificate cut short after its serial number.
  std::string der = "\x30\x0a\x30\x08\xa0\x03\x02\x01\x02\x02\x01\x05";
  std::string truncated = "-----BEGIN CERTIFICATE-----\n" + absl::Base64Escape(der) + "\n-----END CERTIFICATE-----\n";
  absl::StatusOr<LeafSummary> summary = SummarizeLeafPem(truncated);
  ASSERT_FALSE(summary.ok());
  EXPECT_THAT(summary.status().message(), HasSubstr("certificate is malformed"));
}

// Found by //fuzz:certificate_fuzzer: a second subjectAltName (RFC 5280 4.2 allows one)
// added names the full parse does not see. The fast reader refuses the certificate.
TEST_P(CaTest, LeafSummaryRefusesAnExtensionThatAppearsTwice) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("cluster-7", ReferenceTime(), absl::Hours(2))));
  X509_EXTENSION* san = X509_get_ext(leaf.get(), X509_get_ext_by_NID(leaf.get(), NID_subject_alt_name, -1));
  ASSERT_NE(san, nullptr);
  ASSERT_EQ(X509_add_ext(leaf.get(), san, -1), 1);
  absl::StatusOr<LeafSummary> summary = SummarizeLeafPem(ValueOrDie(CertificateToPem(leaf.get())));
  ASSERT_FALSE(summary.ok());
  EXPECT_THAT(summary.status().message(), HasSubstr("an extension appears twice"));
}

TEST_P(CaTest, ExpiredLeafDoesNotVerify) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Hours(1))));
  absl::Status status = VerifyChain(leaf.get(), {pki_.intermediate->certificate()},
                                    {pki_.root.get()}, ReferenceTime() + absl::Hours(2));
  EXPECT_THAT(status.message(), HasSubstr("expired"));
}

TEST_P(CaTest, ExpiredOrNotYetValidCaCannotSign) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey(GetParam()));
  UniquePtr<X509> ca = ValueOrDie(
      CreateSelfSignedCertificate(key.get(), RootCaSpec("old", ReferenceTime(), absl::Hours(1))));
  X509_up_ref(ca.get());
  EVP_PKEY_up_ref(key.get());
  auto expired = Issuer::Create(UniquePtr<X509>(ca.get()), UniquePtr<EVP_PKEY>(key.get()),
                                ReferenceTime() + absl::Hours(2));
  EXPECT_THAT(expired, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(expired.status().message(), HasSubstr("expired on 2026-01-01T01:00:00Z"));
  auto early = Issuer::Create(std::move(ca), std::move(key), ReferenceTime() - absl::Hours(1));
  EXPECT_THAT(early, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(early.status().message(), HasSubstr("not valid until"));
}

TEST_P(CaTest, KeyThatDoesNotMatchTheCaIsRefused) {
  UniquePtr<EVP_PKEY> wrong_key = ValueOrDie(GenerateKey(GetParam()));
  X509_up_ref(pki_.root.get());
  auto issuer = Issuer::Create(UniquePtr<X509>(pki_.root.get()), std::move(wrong_key),
                               ReferenceTime());
  EXPECT_THAT(issuer, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(issuer.status().message(), HasSubstr("does not match"));
}

TEST_P(CaTest, LeafCannotActAsCa) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  UniquePtr<X509> leaf = ValueOrDie(
      pki_.intermediate->Issue(key.get(), ClientSpec("c", ReferenceTime(), absl::Hours(1))));
  auto issuer = Issuer::Create(std::move(leaf), std::move(key), ReferenceTime());
  EXPECT_THAT(issuer.status().message(), HasSubstr("not a CA certificate"));
}

TEST_P(CaTest, FullRegistrationPathFromCsrPem) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey());
  std::string csr = ValueOrDie(CreateCsrPem(key.get(), "east"));
  Issuer::IssuedPem issued = ValueOrDie(
      pki_.intermediate->IssueClientFromCsrPem(csr, "east", ReferenceTime(), absl::Hours(24)));
  EXPECT_EQ(issued.cluster, "east");
  std::vector<UniquePtr<X509>> chain = ValueOrDie(ParseCertificateChainPem(issued.certificate_pem));
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(SerialHex(chain[0].get()), issued.serial_hex);
  EXPECT_THAT(CheckKeyMatchesCertificate(chain[0].get(), key.get()), IsOk());
  EXPECT_THAT(VerifyChain(chain[0].get(), {chain[1].get()}, {pki_.root.get()}, ReferenceTime(),
                          Purpose::kClientAuth)
                  , IsOk());

  auto mismatch =
      pki_.intermediate->IssueClientFromCsrPem(csr, "west", ReferenceTime(), absl::Hours(24));
  EXPECT_THAT(mismatch, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(mismatch.status().message(), HasSubstr("\"west\""));
}

// IssueClient assembles client certificates from DER pieces; they must be the
// certificates the X509 path (Issue) makes, apart from the random serial.
TEST_P(CaTest, AssembledClientCertificateMatchesTheOneBuiltThroughX509) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey(GetParam()));
  VerifiedCsr csr = ValueOrDie(ParseAndVerifyCsrPem(ValueOrDie(CreateCsrPem(key.get(), "cluster-7"))));
  // CAs made in 2049, so that a client certificate crosses into 2051 and its notAfter
  // is a GeneralizedTime.
  TestPki late = TestPki::Make(absl::FromUnixSeconds(2506291200), GetParam());  // 2049-06-03
  for (absl::Time now : {ReferenceTime() + absl::Minutes(7), absl::FromUnixSeconds(2556143999)}) {
    const bool crossing = now != ReferenceTime() + absl::Minutes(7);
    const TestPki& pki = crossing ? late : pki_;
    absl::Duration lifetime = crossing ? absl::Hours(24 * 365 * 2) : absl::Hours(24 * 30);
    Issuer::IssuedPem issued = ValueOrDie(pki.intermediate->IssueClient(csr, now, lifetime));
    std::vector<UniquePtr<X509>> chain = ValueOrDie(ParseCertificateChainPem(issued.certificate_pem));
    ASSERT_EQ(chain.size(), 2u);
    X509* fast = chain[0].get();
    UniquePtr<X509> slow = ValueOrDie(pki.intermediate->Issue(key.get(), ClientSpec("cluster-7", now, lifetime)));

    auto der = [](auto* object, auto i2d) {
      std::string out;
      EXPECT_TRUE(EncodeDer(i2d, object, &out));
      return out;
    };
    EXPECT_EQ(X509_get_version(fast), X509_get_version(slow.get()));
    EXPECT_EQ(der(X509_get_subject_name(fast), i2d_X509_NAME), der(X509_get_subject_name(slow.get()), i2d_X509_NAME));
    EXPECT_EQ(der(X509_get_issuer_name(fast), i2d_X509_NAME), der(X509_get_issuer_name(slow.get()), i2d_X509_NAME));
    EXPECT_EQ(der(X509_get0_notBefore(fast), i2d_ASN1_TIME), der(X509_get0_notBefore(slow.get()), i2d_ASN1_TIME));
    EXPECT_EQ(der(X509_get0_notAfter(fast), i2d_ASN1_TIME), der(X509_get0_notAfter(slow.get()), i2d_ASN1_TIME));
    EXPECT_EQ(der(X509_get_X509_PUBKEY(fast), i2d_X509_PUBKEY), der(X509_get_X509_PUBKEY(slow.get()), i2d_X509_PUBKEY));
    ASSERT_EQ(X509_get_ext_count(fast), X509_get_ext_count(slow.get()));
    for (int i = 0; i < X509_get_ext_count(fast); ++i) {
      EXPECT_EQ(der(X509_get_ext(fast, i), i2d_X509_EXTENSION), der(X509_get_ext(slow.get(), i), i2d_X509_EXTENSION))
          << "extension " << i;
    }
    const X509_ALGOR* fast_algorithm = nullptr;
    const X509_ALGOR* slow_algorithm = nullptr;
    X509_get0_signature(nullptr, &fast_algorithm, fast);
    X509_get0_signature(nullptr, &slow_algorithm, slow.get());
    EXPECT_EQ(der(const_cast<X509_ALGOR*>(fast_algorithm), i2d_X509_ALGOR),
              der(const_cast<X509_ALGOR*>(slow_algorithm), i2d_X509_ALGOR));

    EXPECT_EQ(issued.serial_hex, SerialHex(fast));
    EXPECT_EQ(issued.serial_hex.size(), 32u);
    EXPECT_EQ(issued.not_after, now + lifetime);
    EXPECT_TRUE(IsIssuedBy(pki.intermediate->certificate(), fast));  // the signature verifies
    EXPECT_THAT(VerifyChain(fast, {chain[1].get()}, {pki.root.get()}, now, Purpose::kClientAuth), IsOk());
    // OpenSSL re-encodes what it parsed to the same PEM: the DER is canonical.
    std::string leaf_pem = issued.certificate_pem.substr(
        0, issued.certificate_pem.find("-----END CERTIFICATE-----\n") + strlen("-----END CERTIFICATE-----\n"));
    EXPECT_EQ(ValueOrDie(CertificateToPem(fast)), leaf_pem);
  }
  EXPECT_FALSE(pki_.intermediate->IssueClient(csr, ReferenceTime(), absl::ZeroDuration()).ok());
}

// A leaf never outlives its issuer: asked for longer, it expires with the CA; once the
// CA has expired, nothing is issued. Both paths (X509 objects and assembled DER).
TEST_P(CaTest, LeavesNeverOutliveTheirIssuer) {
  UniquePtr<EVP_PKEY> key = ValueOrDie(GenerateKey(GetParam()));
  UniquePtr<EVP_PKEY> ca_key = ValueOrDie(GenerateKey(GetParam()));
  UniquePtr<X509> ca_cert =
      ValueOrDie(pki_.root_issuer->Issue(ca_key.get(), IntermediateCaSpec("short-ca", ReferenceTime(), absl::Hours(2))));
  absl::Time ca_not_after = ValueOrDie(InspectCertificate(ca_cert.get())).not_after;
  std::unique_ptr<Issuer> short_ca =
      ValueOrDie(Issuer::Create(std::move(ca_cert), std::move(ca_key), ReferenceTime()));
  absl::Time now = ReferenceTime() + absl::Hours(1);

  UniquePtr<X509> slow = ValueOrDie(short_ca->Issue(key.get(), ClientSpec("c", now, absl::Hours(24 * 30))));
  EXPECT_EQ(ValueOrDie(InspectCertificate(slow.get())).not_after, ca_not_after);
  VerifiedCsr csr = ValueOrDie(ParseAndVerifyCsrPem(ValueOrDie(CreateCsrPem(key.get(), "c"))));
  Issuer::IssuedPem fast = ValueOrDie(short_ca->IssueClient(csr, now, absl::Hours(24 * 30)));
  EXPECT_EQ(fast.not_after, ca_not_after);
  std::vector<UniquePtr<X509>> chain = ValueOrDie(ParseCertificateChainPem(fast.certificate_pem));
  EXPECT_EQ(ValueOrDie(InspectCertificate(chain[0].get())).not_after, ca_not_after);

  absl::Time after = ca_not_after + absl::Seconds(1);
  auto refused = short_ca->IssueClient(csr, after, absl::Hours(1));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(refused.status().message(), HasSubstr("renew the signing CA"));
  EXPECT_FALSE(short_ca->Issue(key.get(), ClientSpec("c", after, absl::Hours(1))).ok());
}

}  // namespace
}  // namespace relay::pki
