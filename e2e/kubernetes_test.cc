// Issue 15: the server, the agent and the rotator with their secrets in the Kubernetes
// API (--secrets=kubernetes). No kube-apiserver runs on these machines: two strict test
// apiservers (kube/test_apiserver.h) stand for the management cluster and one workload
// cluster, each reached through a kubeconfig as an operator's would be.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "kube/kubernetes_secret_store.h"
#include "kube/test_apiserver.h"
#include "nlohmann/json.hpp"
#include "pki/certificate.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "yaml-cpp/yaml.h"

namespace relay::e2e {
namespace {

using ::relay::kube::testing::TestApiServer;
using ::relay::testing::IsOk;
using ::testing::HasSubstr;

constexpr char kNamespace[] = "gloo-mesh";
constexpr char kClientSecret[] = "relay-client-tls-secret";

// A cluster's apiserver, a kubeconfig that reaches it, and a client the test reads with.
struct Cluster {
  std::unique_ptr<TestApiServer> apiserver;
  std::string kubeconfig;
  std::unique_ptr<secrets::SecretStore> client;

  // The flags that put a binary's secrets in this cluster.
  std::vector<std::string> Flags() const { return {"--secrets=kubernetes", "--kubeconfig=" + kubeconfig}; }

  // The Secret as the API returns it (type and all), or null when absent.
  nlohmann::json Raw(const std::string& name) const {
    std::string url = apiserver->url();
    httplib::Client http(url);
    httplib::Headers headers = {{"Authorization", "Bearer " + apiserver->token()}};
    auto response = http.Get(absl::StrCat("/api/v1/namespaces/", kNamespace, "/secrets/", name), headers);
    if (!response || response->status != 200) return nullptr;
    return nlohmann::json::parse(response->body);
  }
};

Cluster StartCluster(const std::string& dir) {
  Cluster cluster;
  absl::StatusOr<std::unique_ptr<TestApiServer>> apiserver = TestApiServer::Start();
  EXPECT_THAT(apiserver, IsOk());
  if (!apiserver.ok()) return cluster;
  cluster.apiserver = *std::move(apiserver);
  std::filesystem::create_directories(dir);
  // The token in a file beside the kubeconfig, never on a command line.
  WriteFile(dir + "/token", cluster.apiserver->token() + "\n");
  cluster.kubeconfig = dir + "/kubeconfig";
  WriteFile(cluster.kubeconfig,
            absl::StrCat("apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                         "contexts:\n- name: test\n  context: {cluster: test, user: relay}\n"
                         "clusters:\n- name: test\n  cluster: {server: '",
                         cluster.apiserver->url(), "'}\nusers:\n- name: relay\n  user: {tokenFile: token}\n"));
  absl::StatusOr<kube::KubernetesOptions> options = kube::KubeconfigOptions(cluster.kubeconfig);
  EXPECT_THAT(options, IsOk());
  if (options.ok()) cluster.client = *kube::OpenKubernetesSecretStore(*options);
  return cluster;
}

// What `kubectl apply -f -` does with relayctl secrets export's manifest, here.
void Apply(const std::string& manifest, secrets::SecretStore& store) {
  for (const YAML::Node& document : YAML::LoadAll(manifest)) {
    ASSERT_EQ(document["kind"].as<std::string>(), "Secret");
    secrets::SecretData data;
    for (const auto& entry : document["data"]) {
      std::string value;
      ASSERT_TRUE(absl::Base64Unescape(entry.second.as<std::string>(), &value));
      data[entry.first.as<std::string>()] = value;
    }
    ASSERT_THAT(store.Put(document["metadata"]["namespace"].as<std::string>(kNamespace),  // kubectl apply -n
                          document["metadata"]["name"].as<std::string>(), data),
                IsOk());
  }
}

// The client certificate in the workload cluster: its serial, when its certificate and
// key belong together ("" otherwise: a half-written secret).
std::string WholeClientCertificateSerial(secrets::SecretStore& store) {
  absl::StatusOr<secrets::SecretData> data = store.Get(kNamespace, kClientSecret);
  if (!data.ok() || !data->count("tls.crt") || !data->count("tls.key")) return "";
  auto chain = pki::ParseCertificateChainPem(data->at("tls.crt"));
  auto key = pki::ParsePrivateKeyPem(data->at("tls.key"));
  if (!chain.ok() || !key.ok() || !pki::CheckKeyMatchesCertificate((*chain)[0].get(), key->get()).ok()) return "";
  return pki::InspectCertificate((*chain)[0].get())->serial_hex;
}

double AgentMetric(const AgentUnderTest& agent, const std::string& series) {
  return MetricValue(agent.Metrics(), series);
}

class KubernetesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("kube");
    management_ = StartCluster(dir_ + "/management");
    workload_ = StartCluster(dir_ + "/east");
    ASSERT_TRUE(management_.client && workload_.client);
  }

  // The server with its secrets in the management cluster's API.
  void StartServer(std::vector<std::string> flags = {}) {
    std::vector<std::string> all = management_.Flags();
    all.insert(all.end(), flags.begin(), flags.end());
    server_ = std::make_unique<ServerUnderTest>(dir_ + "/mgmt", all);
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }

  // relayctl secrets export, applied to the workload cluster.
  void ExportTo(Cluster& cluster, const std::string& name) {
    CommandResult exported = RunCommand(
        {RelayctlBinary(), "secrets", "export", "--cluster=" + name, "--secrets=kubernetes",
         "--kubeconfig=" + management_.kubeconfig, "--admin_socket=" + server_->admin_socket()});
    ASSERT_EQ(exported.exit_code, 0) << exported.output;
    Apply(exported.output, *cluster.client);
  }

  std::unique_ptr<AgentUnderTest> StartAgent(const std::string& local_dir) {
    auto agent = std::make_unique<AgentUnderTest>("east", local_dir, server_->address(), workload_.Flags());
    agent->Start();
    return agent;
  }

  std::string dir_;
  Cluster management_;
  Cluster workload_;
  std::unique_ptr<ServerUnderTest> server_;
};

// First start creates the four secrets in the API (the server certificate as
// kubernetes.io/tls); the agent registers from what relayctl secrets export gave its
// cluster, and keeps its certificate in the API: after its "pod" restarts with no local
// files and no token, it comes back with the same certificate without registering.
TEST_F(KubernetesTest, SecretsLiveInTheApiAndTheAgentSurvivesAPodRestart) {
  StartServer();
  for (const char* name : {"relay-root-tls-secret", "relay-tls-signing-secret", "relay-server-tls-secret",
                           "relay-identity-token-secret"}) {
    EXPECT_TRUE(management_.client->Get(kNamespace, name).ok()) << name << " was not created in the API";
  }
  EXPECT_EQ(management_.Raw("relay-server-tls-secret")["type"], "kubernetes.io/tls");
  // The token stays in the API; only what the relay port reads is copied to local files.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/mgmt/" + kNamespace + "/relay-identity-token-secret"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/mgmt/" + kNamespace + "/relay-tls-signing-secret"));

  ExportTo(workload_, "east");
  const std::string local = dir_ + "/east-pod";
  std::unique_ptr<AgentUnderTest> agent = StartAgent(local);
  ASSERT_TRUE(agent->WaitConnected(kPatience)) << agent->Log();
  const std::string serial = WholeClientCertificateSerial(*workload_.client);
  ASSERT_FALSE(serial.empty()) << "the agent did not store its certificate in the API";
  EXPECT_EQ(workload_.Raw(kClientSecret)["type"], "kubernetes.io/tls");
  EXPECT_FALSE(std::filesystem::exists(local + "/" + kNamespace + "/" + kClientSecret))
      << "the client secret went to local files";

  // The pod goes: process killed, its local files gone, and the token removed from the
  // cluster (a single-use token would be spent by now anyway).
  kill(agent->process()->pid(), SIGKILL);
  agent->Stop();
  std::filesystem::remove_all(local);
  ASSERT_THAT(workload_.client->Delete(kNamespace, "relay-identity-token-secret"), IsOk());
  agent->Start();  // a new log and ready file
  ASSERT_TRUE(agent->WaitConnected(kPatience)) << agent->Log();
  EXPECT_EQ(WholeClientCertificateSerial(*workload_.client), serial);
  EXPECT_EQ(CountOccurrences(agent->Log(), "credentials_loaded"), 1) << agent->Log();
  EXPECT_EQ(CountOccurrences(agent->Log(), "credentials_registered"), 0) << agent->Log();
  EXPECT_EQ(CountOccurrences(server_->Log(), "cluster_registered"), 1) << server_->Log();
}

// The workload cluster's apiserver is down for 30 s while the certificate comes due:
// the relay stream stays up, the rotator retries and renews once the API is back, the
// agent takes the new certificate from its watch, and no version of the secret is ever
// half written.
TEST_F(KubernetesTest, AnApiserverOutageKeepsTheStreamAndTheRotatorRetries) {
  // Due at half of 60 s; the outage covers that point.
  StartServer({"--client_cert_ttl=60s"});
  ExportTo(workload_, "east");
  std::unique_ptr<AgentUnderTest> agent = StartAgent(dir_ + "/east-pod");
  ASSERT_TRUE(agent->WaitConnected(kPatience)) << agent->Log();
  const std::string first = WholeClientCertificateSerial(*workload_.client);
  ASSERT_FALSE(first.empty());
  std::vector<std::string> rotator_flags = workload_.Flags();
  rotator_flags.push_back("--grace_period_ratio=0.5");
  RotatorUnderTest rotator("east", dir_ + "/east-rotator", server_->address(), rotator_flags);
  std::string error;
  ASSERT_TRUE(rotator.Start(&error)) << error;

  workload_.apiserver->Stop();
  absl::SleepFor(absl::Seconds(30));
  EXPECT_EQ(AgentMetric(*agent, "relay_agent_connected"), 1) << agent->Log();
  EXPECT_EQ(AgentMetric(*agent, "relay_agent_reconnects_total"), 0) << agent->Log();
  EXPECT_THAT(rotator.Log(), HasSubstr("renewal_failed")) << "the rotator did not try while the API was down";
  ASSERT_THAT(workload_.apiserver->Restart(), IsOk());

  std::string renewed;
  EXPECT_TRUE(WaitFor(
      [&] {
        renewed = WholeClientCertificateSerial(*workload_.client);
        return !renewed.empty() && renewed != first;
      },
      kPatience))
      << rotator.Log();
  EXPECT_TRUE(WaitFor([&] { return AgentMetric(*agent, "relay_agent_credential_reloads_total") >= 1; }, kPatience))
      << agent->Log();
  EXPECT_EQ(AgentMetric(*agent, "relay_agent_heartbeats_unanswered_total"), 0) << agent->Log();
  EXPECT_EQ(AgentMetric(*agent, "relay_agent_connected"), 1) << agent->Log();
  EXPECT_EQ(CountOccurrences(agent->Log(), "relay_stream_ended"), 0) << agent->Log();
}

// relayctl secrets export: a manifest of the root and the token for one cluster,
// refused without a cluster name, and with an absent store an error that names it.
TEST_F(KubernetesTest, SecretsExportWritesTheTwoSecretsForOneCluster) {
  StartServer();
  CommandResult exported = RunCommand({RelayctlBinary(), "secrets", "export", "--cluster=east", "--secrets=kubernetes",
                                       "--kubeconfig=" + management_.kubeconfig, "--admin_socket=" + server_->admin_socket()});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  std::vector<YAML::Node> documents = YAML::LoadAll(exported.output);
  ASSERT_EQ(documents.size(), 2u) << exported.output;
  EXPECT_EQ(documents[0]["metadata"]["name"].as<std::string>(), "relay-root-tls-secret");
  EXPECT_FALSE(documents[0]["data"]["tls.key"]) << "the root's key must never leave the management cluster";
  std::string root;
  ASSERT_TRUE(absl::Base64Unescape(documents[0]["data"]["ca.crt"].as<std::string>(), &root));
  EXPECT_EQ(root, management_.client->Get(kNamespace, "relay-root-tls-secret")->at("ca.crt"));
  EXPECT_EQ(documents[1]["metadata"]["name"].as<std::string>(), "relay-identity-token-secret");
  EXPECT_TRUE(documents[1]["data"]["token"]);

  CommandResult no_cluster = RunCommand({RelayctlBinary(), "secrets", "export", "--secrets=kubernetes",
                                         "--kubeconfig=" + management_.kubeconfig});
  EXPECT_NE(no_cluster.exit_code, 0);
  EXPECT_THAT(no_cluster.output, HasSubstr("--cluster"));
  CommandResult wrong_store = RunCommand({RelayctlBinary(), "secrets", "export", "--cluster=east", "--secrets=kubernetes",
                                          "--kubeconfig=" + workload_.kubeconfig});
  EXPECT_NE(wrong_store.exit_code, 0);
  EXPECT_THAT(wrong_store.output, HasSubstr("relay-root-tls-secret"));
  EXPECT_THAT(wrong_store.output, HasSubstr(workload_.kubeconfig));
}

}  // namespace
}  // namespace relay::e2e
