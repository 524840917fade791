// The etcd backend beyond the contract (conformance.h): what several replicas on one
// store and an etcd that goes away mean for it. Real etcd, started by the test.
#include "state/etcd_state_store.h"

#include <algorithm>
#include <atomic>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/process_testing.h"
#include "common/test_dir.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pki/ca.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "state/etcd_testing.h"

namespace relay::state {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::relay::testing::WaitFor;
using ::testing::HasSubstr;

constexpr absl::Duration kPatience = absl::Seconds(30);

class EtcdStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::EtcdUnderTest>> etcd = testing::EtcdUnderTest::Start();
    ASSERT_THAT(etcd, IsOk());
    etcd_ = *std::move(etcd);
  }

  std::unique_ptr<StateStore> Open(absl::Duration timeout = absl::Seconds(5),
                                   std::optional<SecretCipher> cipher = std::nullopt) {
    EtcdOptions options;
    options.endpoints = {etcd_->endpoint()};
    options.prefix = "/relay/gloo-mesh/";
    options.timeout = timeout;
    options.cipher = std::move(cipher);
    absl::StatusOr<std::unique_ptr<StateStore>> store = OpenEtcdStateStore(options);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<testing::EtcdUnderTest> etcd_;
};

// What one replica writes, another one's watches see: records and secrets.
TEST_F(EtcdStateStoreTest, AnotherReplicasWritesReachThisReplicasWatches) {
  std::unique_ptr<StateStore> first = Open();
  std::unique_ptr<StateStore> second = Open();
  ASSERT_TRUE(first && second);
  absl::Mutex mu;
  std::vector<Change> seen;
  std::atomic<int> secret_changes{0};
  auto watch = second->Watch("clusters/", [&](const Change& change) {
    absl::MutexLock lock(&mu);
    seen.push_back(change);
  });
  auto secret_watch = second->secrets().Watch("gloo-mesh", "relay-root-tls-secret", [&] { secret_changes++; });
  auto other_secret = second->secrets().Watch("gloo-mesh", "relay-root-tls-secret-2", [&] { secret_changes += 100; });

  absl::StatusOr<int64_t> written = first->CompareAndSetAndWait("clusters/east", "state=registered", 0);
  ASSERT_THAT(written, IsOk());
  ASSERT_THAT(first->secrets().Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "root"}}), IsOk());
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return !seen.empty();
      },
      kPatience));
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(seen[0].key, "clusters/east");
    EXPECT_EQ(seen[0].value, "state=registered");
    EXPECT_EQ(seen[0].revision, *written);
  }
  EXPECT_TRUE(WaitFor([&] { return secret_changes.load() == 1; }, kPatience)) << secret_changes.load();
  // And the other replica reads it at the revision the first was told.
  absl::StatusOr<Record> read = second->Get("clusters/east");
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(read->revision, *written);
  EXPECT_EQ((*second->secrets().Get("gloo-mesh", "relay-root-tls-secret"))["ca.crt"], "root");
}

// etcd gone: reads and writes fail UNAVAILABLE, naming etcd (a write saying its outcome
// is unknown), within the timeout; etcd back: the same store works again, and its watch
// (which reconnected by itself) sees what is written from then on.
TEST_F(EtcdStateStoreTest, AnEtcdThatGoesAwayFailsCallsCleanlyAndIsUsedAgainWhenBack) {
  std::unique_ptr<StateStore> store = Open(absl::Seconds(1));
  ASSERT_TRUE(store);
  std::atomic<int> changes{0};
  auto watch = store->Watch("clusters/", [&](const Change&) { changes++; });
  ASSERT_THAT(store->CompareAndSetAndWait("clusters/east", "v1", 0), IsOk());
  ASSERT_TRUE(WaitFor([&] { return changes.load() == 1; }, kPatience));

  etcd_->Stop();
  EXPECT_THAT(store->Get("clusters/east"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("etcd at")));
  absl::StatusOr<int64_t> refused = store->CompareAndSetAndWait("clusters/west", "v1", 0);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("may or may not")));
  EXPECT_THAT(store->secrets().Get("gloo-mesh", "relay-root-tls-secret"),
              StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_THAT(etcd_->Restart(), IsOk());
  // gRPC reconnects with backoff: the first calls after the restart may still fail.
  absl::StatusOr<Record> east;
  ASSERT_TRUE(WaitFor(
      [&] {
        east = store->Get("clusters/east");
        return east.ok();
      },
      kPatience))
      << east.status();
  EXPECT_EQ(east->value, "v1");
  ASSERT_THAT(store->CompareAndSetAndWait("clusters/east", "v2", east->revision), IsOk());
  EXPECT_TRUE(WaitFor([&] { return changes.load() == 2; }, kPatience)) << changes.load();
}

// What etcd holds for a secret is sealed: neither the key nor the token appears in it,
// and a replica without the key, or with another one, says so instead of serving junk.
TEST_F(EtcdStateStoreTest, SecretsAreEncryptedAtRestUnderTheKeyFile) {
  SecretCipher key = *SecretCipher::FromKey(std::string(32, 'a'));
  SecretCipher other_key = *SecretCipher::FromKey(std::string(32, 'b'));
  std::unique_ptr<StateStore> sealed = Open(absl::Seconds(5), key);
  ASSERT_TRUE(sealed);
  ASSERT_THAT(sealed->secrets().Put("gloo-mesh", "relay-tls-signing-secret",
                                    {{"tls.key", "-----BEGIN PRIVATE KEY-----secret"}, {"token", "t0ken-value"}}),
              IsOk());

  std::string raw = testing::ReadEtcdValue(*etcd_, "/relay/gloo-mesh/s/gloo-mesh/relay-tls-signing-secret");
  EXPECT_TRUE(absl::StartsWith(raw, "relay:enc:aesgcm:v1:")) << raw.substr(0, 40);
  EXPECT_FALSE(absl::StrContains(raw, "PRIVATE KEY"));
  EXPECT_FALSE(absl::StrContains(raw, "t0ken-value"));

  absl::StatusOr<secrets::SecretData> read = Open(absl::Seconds(5), key)->secrets().Get("gloo-mesh",
                                                                                         "relay-tls-signing-secret");
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ((*read)["token"], "t0ken-value");
  EXPECT_THAT(Open()->secrets().Get("gloo-mesh", "relay-tls-signing-secret"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--state_encryption_key_file")));
  EXPECT_THAT(Open(absl::Seconds(5), other_key)->secrets().Get("gloo-mesh", "relay-tls-signing-secret"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(key.key_id())));
}

// A read of `key` as it was at `revision`, around the store: its gRPC status code.
grpc::StatusCode ReadAtRevision(const std::string& endpoint, const std::string& key, int64_t revision) {
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  request.set_revision(revision);
  etcdserverpb::RangeResponse response;
  return kv->Range(&context, request, &response).error_code();
}

// Each call compacts etcd's history to the revision current at the previous one, so a
// reader (or a watch) lagging by less than one interval never loses anything.
TEST_F(EtcdStateStoreTest, CompactHistoryForgetsRevisionsOlderThanThePreviousCall) {
  std::unique_ptr<StateStore> store = Open();
  ASSERT_TRUE(store);
  const std::string key = "/relay/gloo-mesh/r/clusters/east";
  absl::StatusOr<int64_t> first = store->CompareAndSetAndWait("clusters/east", "1", 0);
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<int64_t> second = store->CompareAndSetAndWait("clusters/east", "2", *first);
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT(store->CompactHistory(), IsOk());  // takes note of the current revision
  absl::StatusOr<int64_t> third = store->CompareAndSetAndWait("clusters/east", "3", *second);
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(ReadAtRevision(etcd_->endpoint(), key, *first), grpc::StatusCode::OK);

  ASSERT_THAT(store->CompactHistory(), IsOk());  // compacts to the second write
  EXPECT_EQ(ReadAtRevision(etcd_->endpoint(), key, *first), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(ReadAtRevision(etcd_->endpoint(), key, *second), grpc::StatusCode::OK);
  EXPECT_EQ(store->Get("clusters/east")->value, "3");
  // Twice in a row (or after etcd's own compaction) is not an error.
  EXPECT_THAT(store->CompactHistory(), IsOk());
  EXPECT_THAT(store->CompactHistory(), IsOk());
}

TEST_F(EtcdStateStoreTest, NoEtcdAtAllIsAClearErrorAtOpen) {
  EtcdOptions options;
  options.endpoints = {absl::StrCat("127.0.0.1:", relay::testing::FreePort())};
  options.timeout = absl::Seconds(1);
  EXPECT_THAT(OpenEtcdStateStore(options),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("--etcd_endpoints")));
  options.endpoints = {};
  EXPECT_THAT(OpenEtcdStateStore(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

// etcd as production runs it (kubeadm's, for one): TLS only, and a client certificate
// from its CA required (--client-cert-auth). The store is configured as --etcd_ca_file,
// --etcd_cert_file and --etcd_key_file configure it; the certificates come from relay's
// pki, so etcd's Go crypto/x509 checks them too.
class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = relay::testing::MakeTestDir("etcd-tls");
    std::unique_ptr<pki::Issuer> ca = MakeCa("ca");
    std::unique_ptr<pki::Issuer> other_ca = MakeCa("other-ca");
    ASSERT_TRUE(ca && other_ca);
    absl::Time now = absl::Now();
    Issue(*ca, "server", pki::ServerSpec("etcd", {"localhost"}, {"127.0.0.1"}, now, absl::Hours(1)));
    Issue(*ca, "client", pki::ClientSpec("relay-mgmt", now, absl::Hours(1)));
    Issue(*other_ca, "stranger", pki::ClientSpec("relay-mgmt", now, absl::Hours(1)));
    testing::EtcdTlsFiles tls{Path("ca.crt"), Path("server.crt"), Path("server.key"), Path("client.crt"),
                              Path("client.key")};
    absl::StatusOr<std::unique_ptr<testing::EtcdUnderTest>> etcd = testing::EtcdUnderTest::Start(1, &tls);
    ASSERT_THAT(etcd, IsOk());
    etcd_ = *std::move(etcd);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::unique_ptr<pki::Issuer> MakeCa(const std::string& name) {
    absl::Time now = absl::Now();
    absl::StatusOr<pki::UniquePtr<EVP_PKEY>> key = pki::GenerateKey();
    if (!key.ok()) return nullptr;
    absl::StatusOr<pki::UniquePtr<X509>> cert =
        pki::CreateSelfSignedCertificate(key->get(), pki::RootCaSpec(name, now, absl::Hours(2)));
    if (!cert.ok()) return nullptr;
    relay::testing::WriteFileBytes(Path(name + ".crt"), *pki::CertificateToPem(cert->get()));
    absl::StatusOr<std::unique_ptr<pki::Issuer>> issuer = pki::Issuer::Create(*std::move(cert), *std::move(key), now);
    return issuer.ok() ? *std::move(issuer) : nullptr;
  }

  void Issue(const pki::Issuer& ca, const std::string& name, const pki::CertificateSpec& spec) {
    absl::StatusOr<pki::UniquePtr<EVP_PKEY>> key = pki::GenerateKey();
    ASSERT_THAT(key, IsOk());
    absl::StatusOr<pki::UniquePtr<X509>> cert = ca.Issue(key->get(), spec);
    ASSERT_THAT(cert, IsOk());
    relay::testing::WriteFileBytes(Path(name + ".crt"), *pki::CertificateToPem(cert->get()));
    relay::testing::WriteFileBytes(Path(name + ".key"), *pki::PrivateKeyToPem(key->get()));
  }

  EtcdOptions Options(const std::string& ca, const std::string& cert, const std::string& key) const {
    EtcdOptions options;
    options.endpoints = {etcd_->endpoint()};
    options.ca_file = ca.empty() ? "" : Path(ca);
    options.cert_file = cert.empty() ? "" : Path(cert);
    options.key_file = key.empty() ? "" : Path(key);
    options.timeout = absl::Seconds(2);
    return options;
  }

  std::string dir_;
  std::unique_ptr<testing::EtcdUnderTest> etcd_;
};

TEST_F(EtcdTlsTest, TheRightCaAndClientCertificateReadAndWrite) {
  absl::StatusOr<std::unique_ptr<StateStore>> first = OpenEtcdStateStore(Options("ca.crt", "client.crt", "client.key"));
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<std::unique_ptr<StateStore>> second = OpenEtcdStateStore(Options("ca.crt", "client.crt", "client.key"));
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT((*first)->CompareAndSetAndWait("clusters/east", "state=registered", 0), IsOk());
  EXPECT_EQ((*second)->Get("clusters/east")->value, "state=registered");
  EXPECT_NE(testing::ReadEtcdValue(*etcd_, "/relay/gloo-mesh/r/clusters/east"), "");
}

// Each way of getting TLS wrong is refused at start-up, naming etcd and what to check;
// nothing is written.
TEST_F(EtcdTlsTest, AnythingElseIsRefusedAtOpenWithWhatToCheck) {
  struct Case {
    const char* what;
    EtcdOptions options;
    absl::StatusCode code;
    const char* says;
  };
  const Case cases[] = {
      {"plaintext to a TLS etcd", Options("", "", ""), absl::StatusCode::kUnavailable, "--etcd_ca_file"},
      {"no client certificate", Options("ca.crt", "", ""), absl::StatusCode::kUnavailable, "--etcd_cert_file"},
      {"a client certificate from another CA", Options("ca.crt", "stranger.crt", "stranger.key"),
       absl::StatusCode::kUnavailable, "(its --trusted-ca-file) signed --etcd_cert_file"},
      {"etcd's certificate checked against another CA", Options("other-ca.crt", "client.crt", "client.key"),
       absl::StatusCode::kUnavailable, "--etcd_ca_file signed its serving certificate"},
      {"a CA file that is not there", Options("missing.crt", "client.crt", "client.key"),
       absl::StatusCode::kNotFound, "cannot read the etcd CA file"},
      {"a certificate without its key", Options("ca.crt", "client.crt", ""), absl::StatusCode::kNotFound,
       "client key"},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.what);
    EXPECT_THAT(OpenEtcdStateStore(test.options), StatusIs(test.code, HasSubstr(test.says)));
  }
  EXPECT_EQ(testing::ReadEtcdValue(*etcd_, "/relay/gloo-mesh/r/clusters/east"), "");
}

// Three members; the leader is killed (SIGKILL) under two replicas' stores, one of
// which was talking to it. Once the other two have elected a new leader, no call fails:
// writes go only to members that are up, reads move on, the watch resumes elsewhere.
TEST(EtcdClusterTest, KillingTheLeaderFailsNoCallAfterTheElection) {
  absl::StatusOr<std::unique_ptr<testing::EtcdUnderTest>> started = testing::EtcdUnderTest::Start(3);
  ASSERT_THAT(started, IsOk());
  testing::EtcdUnderTest& etcd = **started;
  absl::StatusOr<int> leader = etcd.WaitForLeader();
  ASSERT_THAT(leader, IsOk());
  std::vector<std::string> endpoints = absl::StrSplit(etcd.endpoints(), ',');
  // The first store starts at the leader, the second at a follower.
  std::rotate(endpoints.begin(), endpoints.begin() + *leader, endpoints.end());
  auto open = [&](std::vector<std::string> members) {
    EtcdOptions options;
    options.endpoints = std::move(members);
    options.prefix = "/relay/gloo-mesh/";
    absl::StatusOr<std::unique_ptr<StateStore>> store = OpenEtcdStateStore(options);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? *std::move(store) : nullptr;
  };
  std::unique_ptr<StateStore> on_leader = open(endpoints);
  std::unique_ptr<StateStore> on_follower = open({endpoints[1], endpoints[2], endpoints[0]});
  ASSERT_TRUE(on_leader && on_follower);
  absl::Mutex mu;
  std::set<std::string> seen;
  auto watch = on_follower->Watch("k/", [&](const Change& change) {
    absl::MutexLock lock(&mu);
    seen.insert(change.key);
  });
  ASSERT_THAT(on_leader->CompareAndSetAndWait("k/before", "1", 0), IsOk());

  etcd.Kill(*leader);
  absl::StatusOr<int> next_leader = etcd.WaitForLeader();
  ASSERT_THAT(next_leader, IsOk());
  EXPECT_NE(*next_leader, *leader);

  constexpr int kWrites = 100;
  for (int i = 0; i < kWrites; ++i) {
    for (StateStore* store : {on_leader.get(), on_follower.get()}) {
      std::string key = absl::StrCat("k/", store == on_leader.get() ? "a" : "b", i);
      ASSERT_THAT(store->CompareAndSetAndWait(key, "v", 0), IsOk()) << key;
      absl::StatusOr<Record> read = store->Get(key);
      ASSERT_THAT(read, IsOk()) << key;
    }
  }
  // The asynchronous path too.
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  for (int i = 0; i < kWrites; ++i) {
    on_leader->CompareAndSet(absl::StrCat("k/c", i), "v", 0, [&](absl::StatusOr<int64_t> revision) {
      if (!revision.ok()) failed++;
      answered++;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return answered == kWrites; }, kPatience));
  EXPECT_EQ(failed, 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return seen.size() == 3 * kWrites + 1;
      },
      kPatience));
}

}  // namespace
}  // namespace relay::state
