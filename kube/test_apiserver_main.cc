// The test apiserver (test_apiserver.h) as a process, for tests that run containers
// (e2e/podman_pod_test.sh): pods reach it as a cluster's API, through the service
// account files kubelet would mount. Serves until SIGTERM or SIGINT.
#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "httplib.h"  // the server type TestApiServer holds
#include "kube/test_apiserver.h"
#include "yaml-cpp/yaml.h"

ABSL_FLAG(std::string, token_file, "", "File holding the bearer token clients must send (required).");
ABSL_FLAG(bool, tls, true, "Serve HTTPS under a CA of its own (written to --ca_file).");
ABSL_FLAG(std::string, ca_file, "", "With --tls: where to write the CA certificate clients trust.");
ABSL_FLAG(int, port, 0, "Port on 127.0.0.1; 0 picks a free one.");
ABSL_FLAG(std::string, rbac, "",
          "A Kubernetes manifest (several documents allowed): the rules for secrets of its Role named "
          "--role are the only ones granted (RBAC). Empty: everything is allowed.");
ABSL_FLAG(std::string, role, "", "With --rbac: the name of the Role to enforce.");
ABSL_FLAG(std::string, ready_file, "", "Written once serving: port=N.");
ABSL_FLAG(std::string, preload_namespace, "default",
          "Namespace of a preloaded secret that names none (kubectl apply -n).");
ABSL_FLAG(std::string, preload, "",
          "Secret manifests (several documents) stored before serving, as `kubectl apply -f` by an "
          "administrator would (e.g. the output of relayctl secrets export).");

namespace {

using relay::kube::testing::TestApiServer;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "test-apiserver: " << message << "\n";
  std::exit(2);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The rules on secrets of Role `name` in `manifest`.
std::vector<TestApiServer::Rule> RulesOf(const std::string& manifest, const std::string& name) {
  for (const YAML::Node& document : YAML::LoadAll(ReadFile(manifest))) {
    if (!document.IsMap() || document["kind"].as<std::string>("") != "Role" ||
        document["metadata"]["name"].as<std::string>("") != name) {
      continue;
    }
    std::vector<TestApiServer::Rule> rules;
    for (const YAML::Node& rule : document["rules"]) {
      bool secrets = false;
      for (const YAML::Node& resource : rule["resources"]) secrets = secrets || resource.as<std::string>() == "secrets";
      if (!secrets) continue;
      TestApiServer::Rule granted;
      for (const YAML::Node& verb : rule["verbs"]) granted.verbs.push_back(verb.as<std::string>());
      for (const YAML::Node& resource_name : rule["resourceNames"]) {
        granted.resource_names.push_back(resource_name.as<std::string>());
      }
      rules.push_back(std::move(granted));
    }
    return rules;
  }
  Fail(absl::StrCat("no Role named ", name, " in ", manifest));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("test-apiserver: the Secrets API stand-in of kube/test_apiserver.h as a process.");
  absl::ParseCommandLine(argc, argv);
  TestApiServer::Options options;
  if (absl::GetFlag(FLAGS_token_file).empty()) Fail("--token_file is required");
  options.token = std::string(absl::StripAsciiWhitespace(ReadFile(absl::GetFlag(FLAGS_token_file))));
  options.tls = absl::GetFlag(FLAGS_tls);
  options.port = absl::GetFlag(FLAGS_port);
  if (!absl::GetFlag(FLAGS_rbac).empty()) options.rules = RulesOf(absl::GetFlag(FLAGS_rbac), absl::GetFlag(FLAGS_role));

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before the server's threads start

  absl::StatusOr<std::unique_ptr<TestApiServer>> server = TestApiServer::Start(options);
  if (!server.ok()) Fail(std::string(server.status().message()));
  if (!absl::GetFlag(FLAGS_preload).empty()) {
    for (const YAML::Node& document : YAML::LoadAll(ReadFile(absl::GetFlag(FLAGS_preload)))) {
      if (!document.IsMap() || document["kind"].as<std::string>("") != "Secret") continue;
      std::map<std::string, std::string> data;
      for (const auto& entry : document["data"]) data[entry.first.as<std::string>()] = entry.second.as<std::string>();
      absl::Status seeded = (*server)->Seed(document["metadata"]["namespace"].as<std::string>(absl::GetFlag(FLAGS_preload_namespace)),
                                            document["metadata"]["name"].as<std::string>(""),
                                            document["type"].as<std::string>("Opaque"), data);
      if (!seeded.ok()) Fail(std::string(seeded.message()));
    }
  }
  if (options.tls && !absl::GetFlag(FLAGS_ca_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_ca_file)) << (*server)->ca_pem();
  }
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_ready_file)) << "port=" << (*server)->port() << "\n";
  }
  std::cout << "serving " << (*server)->url() << "\n" << std::flush;
  int signal = 0;
  sigwait(&signals, &signal);
  std::cout << "403 refusals: " << (*server)->Count("403") << "\n";
  return 0;
}
