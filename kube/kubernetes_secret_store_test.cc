// The Kubernetes backend against the strict test apiserver: the SecretStore contract,
// then what the API adds (conflicts, 410, outages, tokens, types).
#include "kube/kubernetes_secret_store.h"

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/process_testing.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "kube/secret_backend.h"
#include "kube/test_apiserver.h"
#include "nlohmann/json.hpp"
#include "secrets/conformance.h"

namespace relay::kube {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::relay::testing::WaitFor;
using ::testing::HasSubstr;
using secrets::SecretStoreConformance;
using secrets::SecretStoreFactory;

constexpr absl::Duration kPatience = absl::Seconds(30);

// A test apiserver and a store on it; the server lives as long as the store.
struct OnTestApiServer {
  std::unique_ptr<testing::TestApiServer> server;
  std::string token_file;
  std::unique_ptr<secrets::SecretStore> store;
};

OnTestApiServer Start(absl::Duration bookmark_interval = absl::Milliseconds(200),
                      testing::TestApiServer::Options options = {}) {
  OnTestApiServer on;
  options.bookmark_interval = bookmark_interval;
  on.server = *testing::TestApiServer::Start(options);
  on.token_file = relay::testing::MakeTestDir("kube") + "/token";
  std::ofstream(on.token_file) << on.server->token() << "\n";
  KubernetesOptions store_options;
  store_options.server = on.server->url();
  store_options.ca_pem = on.server->ca_pem();
  store_options.token_file = on.token_file;
  store_options.timeout = absl::Seconds(5);
  on.store = *OpenKubernetesSecretStore(store_options);
  return on;
}

// Keeps its apiserver alive with it.
class StoreWithServer final : public secrets::SecretStore {
 public:
  explicit StoreWithServer(OnTestApiServer on) : on_(std::move(on)) {}
  absl::StatusOr<secrets::SecretData> Get(absl::string_view ns, absl::string_view name) override {
    return on_.store->Get(ns, name);
  }
  absl::Status Put(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return on_.store->Put(ns, name, data);
  }
  absl::Status Create(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override {
    return on_.store->Create(ns, name, data);
  }
  absl::Status Delete(absl::string_view ns, absl::string_view name) override { return on_.store->Delete(ns, name); }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override { return on_.store->List(ns); }
  std::unique_ptr<secrets::SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                              std::function<void()> on_change) override {
    return on_.store->Watch(ns, name, std::move(on_change));
  }

 private:
  OnTestApiServer on_;
};

INSTANTIATE_TEST_SUITE_P(TestApiServer, SecretStoreConformance,
                         ::testing::Values(SecretStoreFactory{"kubernetes",
                                                              []() -> std::unique_ptr<secrets::SecretStore> {
                                                                return std::make_unique<StoreWithServer>(Start());
                                                              }},
                                           SecretStoreFactory{"kubernetes_https",
                                                              []() -> std::unique_ptr<secrets::SecretStore> {
                                                                testing::TestApiServer::Options tls;
                                                                tls.tls = true;
                                                                return std::make_unique<StoreWithServer>(
                                                                    Start(absl::Milliseconds(200), tls));
                                                              }}),
                         [](const ::testing::TestParamInfo<SecretStoreFactory>& info) { return info.param.name; });

TEST(KubernetesSecretStoreTest, SecretsAreTlsTypedWhereTheKeysFitAndOpaqueElsewhere) {
  OnTestApiServer on = Start();
  ASSERT_THAT(on.store->Put("gloo-mesh", "relay-client-tls-secret",
                            {{"tls.crt", "c"}, {"tls.key", "k"}, {"ca.crt", "r"}}),
              IsOk());
  ASSERT_THAT(on.store->Put("gloo-mesh", "relay-identity-token-secret", {{"token", "t"}}), IsOk());
  httplib::Client client(on.server->url());
  client.set_bearer_token_auth(on.server->token());
  auto type_of = [&](const std::string& name) {
    auto got = client.Get(("/api/v1/namespaces/gloo-mesh/secrets/" + name).c_str());
    return nlohmann::json::parse(got->body).value("type", "");
  };
  EXPECT_EQ(type_of("relay-client-tls-secret"), "kubernetes.io/tls");
  EXPECT_EQ(type_of("relay-identity-token-secret"), "Opaque");
  // A TLS secret cannot lose its key: Kubernetes keeps a secret's type.
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-client-tls-secret", {{"ca.crt", "r"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("delete it first")));
}

// 10 writers x 1,000 updates, a third of which meet an injected 409 Conflict: every
// update is retried until it lands, none is lost or refused, each secret ends at its
// writer's last value.
TEST(KubernetesSecretStoreTest, WritersMeetingConflictsLoseNothing) {
  OnTestApiServer on = Start();
  constexpr int kWriters = 10;
  constexpr int kUpdates = 1000;
  std::atomic<int> failures{0};
  absl::Mutex error_mu;
  std::string first_error;
  on.server->InjectConflictEvery(3);  // a third of all updates meet a conflict
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 1; i <= kUpdates; ++i) {
        absl::Status own = on.store->Put("gloo-mesh", absl::StrCat("writer-", w), {{"count", absl::StrCat(i)}});
        if (!own.ok() && failures++ == 0) {
          absl::MutexLock lock(&error_mu);
          first_error = own.ToString();
        }
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(failures, 0) << first_error;
  for (int w = 0; w < kWriters; ++w) {
    EXPECT_EQ(on.store->Get("gloo-mesh", absl::StrCat("writer-", w))->at("count"), absl::StrCat(kUpdates));
  }
  EXPECT_GT(on.server->Count("PUT 409"), 0);
}

// A 410, in either form, makes the watch list again exactly once and go on.
TEST(KubernetesSecretStoreTest, AnExpiredWatchRelistsOnceAndGoesOn) {
  OnTestApiServer on = Start();
  std::atomic<int> changes{0};
  auto watch = on.store->Watch("gloo-mesh", "watched", [&] { changes++; });
  ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") >= 1; }, kPatience));
  const int64_t lists = on.server->Count("LIST");
  on.server->Compact();  // the running watch gets an ERROR event with 410
  ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") >= 2; }, kPatience));
  EXPECT_EQ(on.server->Count("LIST"), lists + 1);
  ASSERT_THAT(on.store->Put("gloo-mesh", "watched", {{"k", "v"}}), IsOk());
  EXPECT_TRUE(WaitFor([&] { return changes >= 1; }, kPatience));
}

// kube-apiserver ends every watch at its timeout (the store asks for 300 s): the store
// watches again from the last version it saw, without listing, and misses nothing.
TEST(KubernetesSecretStoreTest, AWatchTheApiserverEndsIsResumedFromItsVersion) {
  OnTestApiServer on = Start();
  std::atomic<int> changes{0};
  auto watch = on.store->Watch("gloo-mesh", "watched", [&] { changes++; });
  ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") >= 1; }, kPatience));
  const int64_t lists = on.server->Count("LIST");
  for (int round = 1; round <= 3; ++round) {
    ASSERT_THAT(on.store->Put("gloo-mesh", "watched", {{"round", absl::StrCat(round)}}), IsOk());
    ASSERT_TRUE(WaitFor([&] { return changes >= round; }, kPatience));
    const int64_t watches = on.server->Count("WATCH");
    on.server->EndWatches();
    ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") > watches; }, kPatience));
  }
  EXPECT_EQ(on.server->Count("LIST"), lists);
  EXPECT_EQ(on.server->Count("WATCH END"), 3);
  EXPECT_EQ(changes, 3);
}

// The apiserver away: calls fail UNAVAILABLE naming it, nothing half-written; back, the
// watch resumes and reports what changed.
TEST(KubernetesSecretStoreTest, WhileTheApiIsDownCallsFailCleanlyAndTheWatchResumes) {
  OnTestApiServer on = Start();
  ASSERT_THAT(on.store->Put("gloo-mesh", "watched", {{"k", "1"}}), IsOk());
  std::atomic<int> changes{0};
  auto watch = on.store->Watch("gloo-mesh", "watched", [&] { changes++; });
  ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") >= 1; }, kPatience));
  on.server->Stop();
  EXPECT_THAT(on.store->Put("gloo-mesh", "watched", {{"k", "2"}}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(on.server->url())));
  ASSERT_THAT(on.server->Restart(), IsOk());
  EXPECT_EQ(on.store->Get("gloo-mesh", "watched")->at("k"), "1");
  const int before = changes;
  ASSERT_THAT(on.store->Put("gloo-mesh", "watched", {{"k", "3"}}), IsOk());
  EXPECT_TRUE(WaitFor([&] { return changes > before; }, kPatience));
}

// A refused token is a clear error naming its file; a rotated token file is read again
// after a 401, without waiting for the minute.
TEST(KubernetesSecretStoreTest, ARefusedTokenSaysWhichFileAndARotatedOneIsReadAgain) {
  OnTestApiServer on = Start();
  std::ofstream(on.token_file, std::ios::trunc) << "not-the-token\n";
  KubernetesOptions options;
  options.server = on.server->url();
  options.token_file = on.token_file;
  std::unique_ptr<secrets::SecretStore> store = *OpenKubernetesSecretStore(options);
  absl::Status refused = store->Put("gloo-mesh", "x", {{"k", "v"}});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr(on.token_file)));
  EXPECT_THAT(refused.message(), ::testing::Not(HasSubstr("not-the-token")));
  std::ofstream(on.token_file, std::ios::trunc) << on.server->token() << "\n";
  EXPECT_THAT(store->Put("gloo-mesh", "x", {{"k", "v"}}), IsOk());
}

// A kubeconfig's current context: its server and token (inline or a file beside it);
// credentials relay does not speak are refused saying so.
TEST(KubernetesSecretStoreTest, AKubeconfigNamesTheServerAndTheToken) {
  OnTestApiServer on = Start();
  const std::string dir = relay::testing::MakeTestDir("kubeconfig");
  std::ofstream(dir + "/token") << on.server->token() << "\n";
  auto write = [&](const std::string& user) {
    std::ofstream(dir + "/config", std::ios::trunc)
        << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        << "contexts:\n- name: test\n  context: {cluster: local, user: relay, namespace: workload-ns}\n"
        << "- name: other\n  context: {cluster: nowhere, user: relay}\n"
        << "clusters:\n- name: local\n  cluster: {server: '" << on.server->url()
        << "', certificate-authority-data: " << "Zm9v" << "}\n"
        << "users:\n- name: relay\n  user: " << user << "\n";
  };
  write("{tokenFile: token}");
  std::string ns;
  absl::StatusOr<KubernetesOptions> options = KubeconfigOptions(dir + "/config", &ns);
  ASSERT_THAT(options, IsOk());
  EXPECT_EQ(options->server, on.server->url());
  EXPECT_EQ(options->token_file, dir + "/token");
  EXPECT_EQ(options->ca_pem, "foo");
  EXPECT_EQ(ns, "workload-ns");
  std::unique_ptr<secrets::SecretStore> store = *OpenKubernetesSecretStore(*options);
  EXPECT_THAT(store->Put("workload-ns", "relay-identity-token-secret", {{"token", "t"}}), IsOk());

  write("{token: '" + on.server->token() + "'}");
  options = KubeconfigOptions(dir + "/config");
  ASSERT_THAT(options, IsOk());
  store = *OpenKubernetesSecretStore(*options);
  EXPECT_EQ(store->Get("workload-ns", "relay-identity-token-secret")->at("token"), "t");

  write("{client-certificate: c.crt, client-key: c.key}");
  EXPECT_THAT(KubeconfigOptions(dir + "/config"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bearer token only")));
  EXPECT_THAT(KubeconfigOptions(dir + "/missing"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// The namespace: the flag when given (or for a directory), else the kubeconfig
// context's, else the flag's default.
TEST(SecretBackendTest, TheNamespaceIsTheFlagsOrTheConfigurations) {
  const std::string dir = relay::testing::MakeTestDir("namespace");
  auto write = [&](const std::string& context) {
    std::ofstream(dir + "/config", std::ios::trunc)
        << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        << "contexts:\n- name: test\n  context: " << context << "\n"
        << "clusters:\n- name: local\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        << "users:\n- name: relay\n  user: {token: t}\n";
  };
  write("{cluster: local, user: relay, namespace: workload-ns}");
  const std::string config = dir + "/config";
  EXPECT_EQ(NamespaceFor("gloo-mesh", false, SecretBackend::kKubernetes, config), "workload-ns");
  EXPECT_EQ(NamespaceFor("chosen", true, SecretBackend::kKubernetes, config), "chosen");
  EXPECT_EQ(NamespaceFor("gloo-mesh", false, SecretBackend::kDirectory, config), "gloo-mesh");
  write("{cluster: local, user: relay}");
  EXPECT_EQ(NamespaceFor("gloo-mesh", false, SecretBackend::kKubernetes, config), "gloo-mesh");
  EXPECT_EQ(NamespaceFor("gloo-mesh", false, SecretBackend::kKubernetes, dir + "/missing"), "gloo-mesh");
}

// HTTPS: the cluster's CA is trusted, another CA is not.
TEST(KubernetesSecretStoreTest, SpeaksHttpsTrustingOnlyTheClustersCa) {
  testing::TestApiServer::Options tls;
  tls.tls = true;
  OnTestApiServer on = Start(absl::Milliseconds(200), tls);
  ASSERT_TRUE(absl::StartsWith(on.server->url(), "https://"));
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "root"}}), IsOk());
  EXPECT_EQ(on.store->Get("gloo-mesh", "relay-root-tls-secret")->at("ca.crt"), "root");

  std::unique_ptr<testing::TestApiServer> other = *testing::TestApiServer::Start(tls);
  KubernetesOptions wrong_ca;
  wrong_ca.server = on.server->url();
  wrong_ca.token_file = on.token_file;
  wrong_ca.ca_pem = other->ca_pem();
  std::unique_ptr<secrets::SecretStore> untrusting = *OpenKubernetesSecretStore(wrong_ca);
  EXPECT_THAT(untrusting->Get("gloo-mesh", "relay-root-tls-secret"), StatusIs(absl::StatusCode::kUnavailable));
}

// RBAC as a Role grants it: names restrict get/update/watch (a watch by field selector),
// never create; what is not granted is PERMISSION_DENIED naming the verb and the Role's
// place, and changes nothing.
TEST(KubernetesSecretStoreTest, ARoleGrantsOnlyItsVerbsOnItsNames) {
  testing::TestApiServer::Options rbac;
  rbac.rules = std::vector<testing::TestApiServer::Rule>{
      {{"create"}, {}},
      {{"get", "update", "list", "watch"}, {"relay-client-tls-secret"}},
      {{"get"}, {"relay-root-tls-secret"}},
  };
  OnTestApiServer on = Start(absl::Milliseconds(200), rbac);
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-client-tls-secret", {{"tls.crt", "c"}, {"tls.key", "k"}}), IsOk());
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-client-tls-secret", {{"tls.crt", "c2"}, {"tls.key", "k2"}}), IsOk());
  EXPECT_THAT(on.store->Get("gloo-mesh", "relay-root-tls-secret"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "x"}}), IsOk());  // created
  EXPECT_THAT(on.store->Put("gloo-mesh", "relay-root-tls-secret", {{"ca.crt", "y"}}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("update")));
  EXPECT_EQ(on.store->Get("gloo-mesh", "relay-root-tls-secret")->at("ca.crt"), "x");
  EXPECT_THAT(on.store->Get("gloo-mesh", "other"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(on.store->Delete("gloo-mesh", "relay-client-tls-secret"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(on.store->List("gloo-mesh"), StatusIs(absl::StatusCode::kPermissionDenied));
  // A watch by name is a list and a watch with metadata.name=: granted for the client secret.
  std::atomic<int> changes{0};
  std::unique_ptr<secrets::SecretWatch> watch =
      on.store->Watch("gloo-mesh", "relay-client-tls-secret", [&] { changes++; });
  ASSERT_TRUE(WaitFor([&] { return on.server->Count("WATCH") >= 1; }, kPatience));
  ASSERT_THAT(on.store->Put("gloo-mesh", "relay-client-tls-secret", {{"tls.crt", "c3"}, {"tls.key", "k3"}}), IsOk());
  EXPECT_TRUE(WaitFor([&] { return changes > 0; }, kPatience));
  EXPECT_EQ(on.server->Count("403"), 4);
}

}  // namespace
}  // namespace relay::kube
