#include "config/values.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay::config {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;

// The values as the mesh's documentation shows them (shared/seed).
constexpr char kDocumentedValues[] = R"(
glooMgmtServer:
  relay:
    disableCa: false
    disableCaCertGeneration: false
    disableTokenGeneration: false
    # Push RBAC resources to the management server.
    pushRbac: true
    signingTlsSecret:
      name: relay-tls-signing-secret
    tlsSecret:
      name: relay-server-tls-secret
    tokenSecret:
      key: token
      name: relay-identity-token-secret
      namespace: ""
glooAgent:
  relay:
    authority: gloo-mesh-mgmt-server.gloo-mesh
    clientTlsSecret:
        name: relay-client-tls-secret
    clientTlsSecretRotationGracePeriodRatio: ""
    rootTlsSecret:
      name: relay-root-tls-secret
    serverAddress: ""
    tokenSecret:
      key: token
      name: relay-identity-token-secret
      namespace: ""
)";

TEST(ValuesTest, DocumentedValuesGiveTheDefaults) {
  MgmtServerValues mgmt = *ParseMgmtServerValues(kDocumentedValues, "values.yaml");
  EXPECT_FALSE(mgmt.disable_ca);
  EXPECT_TRUE(mgmt.push_rbac);
  EXPECT_EQ(mgmt.signing_tls_secret, "relay-tls-signing-secret");
  EXPECT_EQ(mgmt.tls_secret, "relay-server-tls-secret");
  EXPECT_EQ(mgmt.token_secret.key, "token");
  EXPECT_EQ(mgmt.token_secret.ns, "");
  EXPECT_EQ(mgmt.client_cert_ttl, absl::Hours(720));

  AgentValues agent = *ParseAgentValues(kDocumentedValues, "values.yaml");
  EXPECT_EQ(agent.authority, "gloo-mesh-mgmt-server.gloo-mesh");
  EXPECT_EQ(agent.client_tls_secret, "relay-client-tls-secret");
  EXPECT_DOUBLE_EQ(agent.client_tls_secret_rotation_grace_period_ratio, 0.5);
  EXPECT_EQ(agent.server_address, "");
  EXPECT_EQ(agent.token_secret.name, "relay-identity-token-secret");
}

TEST(ValuesTest, EmptyFileAndOtherSectionsGiveDefaults) {
  EXPECT_EQ(ParseAgentValues("", "v.yaml")->authority, kDefaultAuthority);
  EXPECT_TRUE(ParseMgmtServerValues("glooUi:\n  enabled: true\n", "v.yaml")->push_rbac);
  // The chart's own keys beside `relay` are not ours to judge.
  EXPECT_THAT(ParseAgentValues("glooAgent:\n  enabled: true\n  relay: {}\n", "v.yaml"), IsOk());
}

TEST(ValuesTest, SettingsAreRead) {
  AgentValues agent = *ParseAgentValues(R"(
glooAgent:
  relay:
    cluster: east
    serverAddress: mgmt.example.com:9900
    clientTlsSecretRotationGracePeriodRatio: 0.25
    tokenSecret: {key: bootstrap, namespace: other-ns}
)", "v.yaml");
  EXPECT_EQ(agent.cluster, "east");
  EXPECT_EQ(agent.server_address, "mgmt.example.com:9900");
  EXPECT_DOUBLE_EQ(agent.client_tls_secret_rotation_grace_period_ratio, 0.25);
  EXPECT_EQ(agent.token_secret.key, "bootstrap");
  EXPECT_EQ(agent.token_secret.ns, "other-ns");
  EXPECT_DOUBLE_EQ(
      ParseAgentValues("glooAgent: {relay: {clientTlsSecretRotationGracePeriodRatio: \"0.3\"}}",
                       "v.yaml")
          ->client_tls_secret_rotation_grace_period_ratio,
      0.3);
  MgmtServerValues mgmt = *ParseMgmtServerValues(
      "glooMgmtServer: {relay: {disableCa: true, clientCertTtl: 1h}}", "v.yaml");
  EXPECT_TRUE(mgmt.disable_ca);
  EXPECT_EQ(mgmt.client_cert_ttl, absl::Hours(1));
  EXPECT_EQ(mgmt.state.backend, "local");
}

TEST(ValuesTest, TheStateBlockChoosesEtcd) {
  MgmtServerValues mgmt = *ParseMgmtServerValues(R"(
glooMgmtServer:
  relay:
    state:
      backend: etcd
      etcd:
        endpoints: [etcd-0:2379, etcd-1:2379]
        caFile: /etc/etcd/ca.crt
        certFile: /etc/etcd/client.crt
        keyFile: /etc/etcd/client.key
      encryptionKeyFile: /etc/relay/state.key
)", "v.yaml");
  EXPECT_EQ(mgmt.state.backend, "etcd");
  EXPECT_THAT(mgmt.state.etcd_endpoints, ::testing::ElementsAre("etcd-0:2379", "etcd-1:2379"));
  EXPECT_EQ(mgmt.state.etcd_ca_file, "/etc/etcd/ca.crt");
  EXPECT_EQ(mgmt.state.etcd_cert_file, "/etc/etcd/client.crt");
  EXPECT_EQ(mgmt.state.etcd_key_file, "/etc/etcd/client.key");
  EXPECT_EQ(mgmt.state.encryption_key_file, "/etc/relay/state.key");
  EXPECT_FALSE(mgmt.state.plaintext_secrets);
  MgmtServerValues comma = *ParseMgmtServerValues(
      "glooMgmtServer: {relay: {state: {etcd: {endpoints: \"a:1,b:2\"}, plaintextSecrets: true}}}", "v.yaml");
  EXPECT_THAT(comma.state.etcd_endpoints, ::testing::ElementsAre("a:1", "b:2"));
  EXPECT_TRUE(comma.state.plaintext_secrets);
  AgentValues agent = *ParseAgentValues("glooAgent: {relay: {serverAddress: \"a:9900,b:9900\"}}", "v.yaml");
  EXPECT_EQ(agent.server_address, "a:9900,b:9900");
}

struct BadCase {
  std::string yaml;
  std::string expected;
};

TEST(ValuesTest, BadValuesNameTheKeyPathAndFile) {
  std::vector<BadCase> agent_cases = {
      {"glooAgent:\n  relay:\n    authorty: x\n", "glooAgent.relay.authorty: unknown key"},
      {"glooAgent:\n  relay:\n    clientTlsSecretRotationGracePeriodRatio: 1.5\n",
       "glooAgent.relay.clientTlsSecretRotationGracePeriodRatio: 1.5 is out of range"},
      {"glooAgent:\n  relay:\n    clientTlsSecretRotationGracePeriodRatio: 0\n", "out of range"},
      {"glooAgent:\n  relay:\n    clientTlsSecretRotationGracePeriodRatio: half\n",
       "expected a number"},
      {"glooAgent:\n  relay:\n    tokenSecret:\n      nmae: x\n",
       "glooAgent.relay.tokenSecret.nmae: unknown key"},
      {"glooAgent:\n  relay:\n    rootTlsSecret:\n      name: Bad_Name\n",
       "glooAgent.relay.rootTlsSecret.name"},
      {"glooAgent:\n  relay:\n    cluster: East\n", "not a DNS label"},
      {"glooAgent:\n  relay:\n    serverAddress: nohost\n", "expected host:port"},
      {"glooAgent:\n  relay:\n    serverAddress: \"a:1,\"\n", "several separated by commas"},
      {"glooAgent:\n  relay:\n    clientTlsSecret: relay-client-tls-secret\n", "expected a map"},
      {"glooAgent:\n  relay: [1, 2]\n", "expected a map"},
      {"glooAgent:\n  relay:\n    authority: [x\n", "not valid YAML"},
  };
  for (const BadCase& c : agent_cases) {
    auto values = ParseAgentValues(c.yaml, "my-values.yaml");
    ASSERT_FALSE(values.ok()) << c.yaml;
    EXPECT_THAT(values, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(values.status().message(), HasSubstr("my-values.yaml:")) << c.yaml;
    EXPECT_THAT(values.status().message(), HasSubstr(c.expected)) << c.yaml;
  }
  std::vector<BadCase> mgmt_cases = {
      {"glooMgmtServer:\n  relay:\n    disableCa: yes please\n", "glooMgmtServer.relay.disableCa: expected true or false"},
      {"glooMgmtServer:\n  relay:\n    clientCertTtl: -1h\n", "must be positive"},
      {"glooMgmtServer:\n  relay:\n    clientCertTtl: 0s\n", "must be positive"},
      {"glooMgmtServer:\n  relay:\n    clientCertTtl: soon\n", "expected a duration"},
      {"glooMgmtServer:\n  relay:\n    pushRBAC: true\n", "unknown key"},
      {"glooMgmtServer:\n  relay:\n    state: {backend: redis}\n", "glooMgmtServer.relay.state.backend: expected one of: local, etcd"},
      {"glooMgmtServer:\n  relay:\n    state: {etcd: {endpoints: [etcd]}}\n", "\"etcd\" is not host:port"},
      {"glooMgmtServer:\n  relay:\n    state: {etcd: {endpoint: x:1}}\n", "glooMgmtServer.relay.state.etcd.endpoint: unknown key"},
  };
  for (const BadCase& c : mgmt_cases) {
    auto values = ParseMgmtServerValues(c.yaml, "mgmt.yaml");
    ASSERT_FALSE(values.ok()) << c.yaml;
    EXPECT_THAT(values.status().message(), HasSubstr("mgmt.yaml:3: ")) << c.yaml;
    EXPECT_THAT(values.status().message(), HasSubstr(c.expected)) << c.yaml;
  }
}

TEST(ValuesTest, LoadReadsAFileAndReportsAMissingOne) {
  std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/values.yaml");
  std::ofstream(path) << "glooAgent:\n  relay:\n    cluster: west\n";
  EXPECT_EQ(LoadAgentValues(path)->cluster, "west");
  EXPECT_EQ(LoadAgentValues("")->cluster, "");
  auto missing = LoadMgmtServerValues("/nonexistent/values.yaml");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(missing.status().message(), HasSubstr("--values"));
}

// deploy/values.yaml is what the manifests ship: both sides must accept it.
TEST(ValuesTest, TheShippedValuesFileIsValidForServerAndAgent) {
  absl::StatusOr<MgmtServerValues> mgmt = LoadMgmtServerValues("deploy/values.yaml");
  ASSERT_THAT(mgmt, IsOk());
  EXPECT_EQ(mgmt->client_cert_ttl, absl::Hours(720));
  absl::StatusOr<AgentValues> agent = LoadAgentValues("deploy/values.yaml");
  ASSERT_THAT(agent, IsOk());
  EXPECT_EQ(agent->cluster, "cluster-1");
  EXPECT_EQ(agent->server_address, "gloo-mesh-mgmt-server.gloo-mesh:9900");
  EXPECT_DOUBLE_EQ(agent->client_tls_secret_rotation_grace_period_ratio, 0.5);
}

}  // namespace
}  // namespace relay::config
