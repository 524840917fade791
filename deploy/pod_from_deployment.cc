// pod-from-deployment: turns a Deployment of the shipped manifests (deploy/kubernetes/)
// into a Pod that `podman kube play` runs on one machine, by fixed rules (listed in
// kUsage, shown by --help), so the pod a test plays is the pod that ships.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "yaml-cpp/yaml.h"

namespace {

constexpr char kUsage[] = R"(pod-from-deployment: a Deployment of a Kubernetes manifest as a Pod for `podman kube play`.

Usage: pod-from-deployment --manifest=FILE --deployment=NAME --pod_name=NAME [options] > pod.yaml

The rules, applied in this order and nothing else:
  1. The Pod is the Deployment's pod template: its labels, its spec (containers, their
     args, images, resources, securityContext, volumeMounts; the pod securityContext).
  2. hostNetwork: true and restartPolicy: Never (one run, on this machine's network).
  3. --image=CONTAINER=IMAGE replaces a container's image (every container needs one).
  4. --arg=CONTAINER:--flag=value sets a flag: replaces the argument --flag=... of that
     container, or appends it when absent.
  5. Volumes: --host_dir=VOLUME=PATH turns an emptyDir, secret or persistentVolumeClaim
     volume into a hostPath directory holding the same files (podman 4.3 panics on
     secret volumes and has no claims); every such volume needs one. configMap volumes
     stay: give podman the ConfigMaps written by --configmaps_out (kube play --configmap).
  6. Service account: when the pod has automountServiceAccountToken: true, what kubelet
     adds is added: --service_account_dir=PATH (token, ca.crt, namespace) mounted
     read-only at /var/run/secrets/kubernetes.io/serviceaccount in every container, and
     KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT from --apiserver=HOST:PORT.
     serviceAccountName and automountServiceAccountToken are then dropped (podman has
     no service accounts).
  7. Dropped: probes (podman would run them as healthchecks on the manifest's ports,
     which a test moves with rule 4; the test checks the endpoints itself) and container
     ports (meaningless on the host network).
  8. --memory_limit_scale=N multiplies every container's memory limit by N (default
     1): for builds under a sanitizer, which need several times the memory the shipped
     limits allow (AddressSanitizer's shadow and quarantine).

Options:
  --manifest=FILE              the manifest (several documents)
  --deployment=NAME            the Deployment to play
  --pod_name=NAME              metadata.name of the Pod
  --image=CONTAINER=IMAGE      rule 3 (repeat)
  --arg=CONTAINER:--FLAG=VALUE rule 4 (repeat)
  --host_dir=VOLUME=PATH       rule 5 (repeat)
  --service_account_dir=PATH   rule 6
  --apiserver=HOST:PORT        rule 6
  --configmaps_out=FILE        write the manifest's ConfigMaps there (rule 5)
  --memory_limit_scale=N       rule 8
)";

constexpr char kServiceAccountMount[] = "/var/run/secrets/kubernetes.io/serviceaccount";

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "pod-from-deployment: " << message << "\n";
  std::exit(2);
}

struct Options {
  std::string manifest, deployment, pod_name, service_account_dir, apiserver, configmaps_out;
  std::map<std::string, std::string> images;                            // container -> image
  std::map<std::string, std::vector<std::string>> args;                  // container -> --flag=value
  std::map<std::string, std::string> host_dirs;                          // volume -> path
  int memory_limit_scale = 1;
};

// "KEY=VALUE" split at the first '=' (or at `separator`).
std::pair<std::string, std::string> Split(const std::string& text, char separator, const std::string& flag) {
  size_t at = text.find(separator);
  if (at == std::string::npos || at == 0) Fail(flag + " takes KEY" + separator + "VALUE, got \"" + text + "\"");
  return {text.substr(0, at), text.substr(at + 1)};
}

Options Parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    size_t equals = arg.find('=');
    if (arg.rfind("--", 0) != 0 || equals == std::string::npos) Fail("unexpected argument \"" + arg + "\" (see --help)");
    std::string name = arg.substr(2, equals - 2), value = arg.substr(equals + 1);
    if (name == "manifest") options.manifest = value;
    else if (name == "deployment") options.deployment = value;
    else if (name == "pod_name") options.pod_name = value;
    else if (name == "service_account_dir") options.service_account_dir = value;
    else if (name == "apiserver") options.apiserver = value;
    else if (name == "configmaps_out") options.configmaps_out = value;
    else if (name == "memory_limit_scale") {
      if (!absl::SimpleAtoi(value, &options.memory_limit_scale) || options.memory_limit_scale < 1) {
        Fail("--memory_limit_scale takes a whole number from 1, got \"" + value + "\"");
      }
    } else if (name == "image") options.images.insert(Split(value, '=', "--image"));
    else if (name == "host_dir") options.host_dirs.insert(Split(value, '=', "--host_dir"));
    else if (name == "arg") {
      auto [container, flag] = Split(value, ':', "--arg");
      if (flag.rfind("--", 0) != 0 || flag.find('=') == std::string::npos) {
        Fail("--arg=CONTAINER:--flag=value, got \"" + value + "\"");
      }
      options.args[container].push_back(flag);
    } else {
      Fail("unknown flag --" + name + " (see --help)");
    }
  }
  if (options.manifest.empty() || options.deployment.empty() || options.pod_name.empty()) {
    Fail("--manifest, --deployment and --pod_name are required (see --help)");
  }
  return options;
}

std::vector<YAML::Node> Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return YAML::LoadAll(text.str());
  } catch (const YAML::Exception& error) {
    Fail(path + ": " + error.what());
  }
}

// Rule 8 on one quantity: "64Mi" times 8 is "512Mi". Whole numbers with an optional
// unit suffix, as the shipped manifests write them.
std::string ScaleQuantity(const std::string& quantity, int scale) {
  size_t digits = 0;
  while (digits < quantity.size() && absl::ascii_isdigit(quantity[digits])) ++digits;
  const std::string unit = quantity.substr(digits);
  static const std::set<std::string> kUnits = {"", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"};
  int64_t amount = 0;
  if (digits == 0 || !kUnits.count(unit) || !absl::SimpleAtoi(quantity.substr(0, digits), &amount)) {
    Fail("memory limit \"" + quantity + "\" is not a whole number with a unit; --memory_limit_scale cannot scale it");
  }
  return std::to_string(amount * scale) + unit;
}

// Rule 4 on one container's args.
void SetFlag(YAML::Node args, const std::string& flag_and_value) {
  const std::string prefix = flag_and_value.substr(0, flag_and_value.find('=') + 1);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].as<std::string>().rfind(prefix, 0) == 0) {
      args[i] = flag_and_value;
      return;
    }
  }
  args.push_back(flag_and_value);
}

}  // namespace

int main(int argc, char** argv) {
  Options options = Parse(argc, argv);
  std::vector<YAML::Node> documents = Load(options.manifest);
  YAML::Node deployment;
  std::vector<YAML::Node> config_maps;
  for (const YAML::Node& document : documents) {
    if (!document.IsMap()) continue;
    const std::string kind = document["kind"].as<std::string>("");
    if (kind == "ConfigMap") config_maps.push_back(document);
    if (kind == "Deployment" && document["metadata"]["name"].as<std::string>("") == options.deployment) {
      deployment = document;
    }
  }
  if (!deployment) Fail("no Deployment named " + options.deployment + " in " + options.manifest);

  // Rule 1.
  YAML::Node pod;
  pod["apiVersion"] = "v1";
  pod["kind"] = "Pod";
  pod["metadata"]["name"] = options.pod_name;
  pod["metadata"]["labels"] = YAML::Clone(deployment["spec"]["template"]["metadata"]["labels"]);
  YAML::Node spec = YAML::Clone(deployment["spec"]["template"]["spec"]);
  // Rule 2.
  spec["hostNetwork"] = true;
  spec["restartPolicy"] = "Never";

  // Rule 6.
  const bool uses_api = spec["automountServiceAccountToken"] && spec["automountServiceAccountToken"].as<bool>();
  if (uses_api && (options.service_account_dir.empty() || options.apiserver.empty())) {
    Fail("the pod mounts its service account token: give --service_account_dir and --apiserver");
  }
  spec.remove("serviceAccountName");
  spec.remove("automountServiceAccountToken");

  std::set<std::string> containers_seen;
  for (YAML::Node container : spec["containers"]) {
    const std::string name = container["name"].as<std::string>();
    containers_seen.insert(name);
    // Rule 3.
    auto image = options.images.find(name);
    if (image == options.images.end()) Fail("no --image for container " + name);
    container["image"] = image->second;
    // Rule 4.
    for (const std::string& flag : options.args[name]) SetFlag(container["args"], flag);
    // Rule 6.
    if (uses_api) {
      YAML::Node mount;
      mount["name"] = "kube-api-access";
      mount["mountPath"] = kServiceAccountMount;
      mount["readOnly"] = true;
      container["volumeMounts"].push_back(mount);
      const size_t colon = options.apiserver.rfind(':');
      if (colon == std::string::npos) Fail("--apiserver takes HOST:PORT");
      for (auto [env_name, env_value] : {std::pair{"KUBERNETES_SERVICE_HOST", options.apiserver.substr(0, colon)},
                                         std::pair{"KUBERNETES_SERVICE_PORT", options.apiserver.substr(colon + 1)}}) {
        YAML::Node env;
        env["name"] = env_name;
        env["value"] = env_value;
        env["value"].SetTag("tag:yaml.org,2002:str");  // a port is still a string here
        container["env"].push_back(env);
      }
    }
    // Rule 7.
    container.remove("readinessProbe");
    container.remove("livenessProbe");
    container.remove("startupProbe");
    container.remove("ports");
    // Rule 8.
    const YAML::Node& shipped = container;  // const lookups add no keys
    if (options.memory_limit_scale != 1 && shipped["resources"] && shipped["resources"]["limits"] &&
        shipped["resources"]["limits"]["memory"]) {
      container["resources"]["limits"]["memory"] =
          ScaleQuantity(shipped["resources"]["limits"]["memory"].as<std::string>(), options.memory_limit_scale);
    }
  }
  for (const auto& [name, unused] : options.images) {
    if (!containers_seen.count(name)) Fail("--image names container " + name + ", which the pod does not have");
  }
  for (const auto& [name, unused] : options.args) {
    if (!containers_seen.count(name)) Fail("--arg names container " + name + ", which the pod does not have");
  }

  // Rule 5.
  std::set<std::string> volumes_seen;
  for (YAML::Node volume : spec["volumes"]) {
    const std::string name = volume["name"].as<std::string>();
    volumes_seen.insert(name);
    if (volume["configMap"]) continue;
    if (!volume["emptyDir"] && !volume["secret"] && !volume["persistentVolumeClaim"]) {
      Fail("volume " + name + " is of a kind these rules do not cover");
    }
    auto dir = options.host_dirs.find(name);
    if (dir == options.host_dirs.end()) Fail("no --host_dir for volume " + name);
    volume.remove("emptyDir");
    volume.remove("secret");
    volume.remove("persistentVolumeClaim");
    volume["hostPath"]["path"] = dir->second;
    volume["hostPath"]["type"] = "Directory";
  }
  for (const auto& [name, unused] : options.host_dirs) {
    if (!volumes_seen.count(name)) Fail("--host_dir names volume " + name + ", which the pod does not have");
  }
  if (uses_api) {
    YAML::Node access;
    access["name"] = "kube-api-access";
    access["hostPath"]["path"] = options.service_account_dir;
    access["hostPath"]["type"] = "Directory";
    spec["volumes"].push_back(access);
  }
  pod["spec"] = spec;

  if (!options.configmaps_out.empty()) {
    YAML::Emitter out;
    for (const YAML::Node& config_map : config_maps) out << YAML::BeginDoc << config_map;
    std::ofstream file(options.configmaps_out);
    file << out.c_str() << "\n";
    if (!file) Fail("cannot write " + options.configmaps_out);
  }
  YAML::Emitter out;
  out << pod;
  std::cout << "# Made by deploy/pod_from_deployment from " << options.manifest << " (Deployment "
            << options.deployment << ").\n"
            << out.c_str() << "\n";
  return std::cout.good() ? 0 : 1;
}
