#include "config/values.h"

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace relay::config {
namespace {

// Walks one values document. yaml-cpp reports through exceptions; they are caught in
// Parse() and nowhere else.
class ValuesReader {
 public:
  explicit ValuesReader(absl::string_view file) : file_(file) {}

  absl::Status Error(const std::string& path, const YAML::Node& node, absl::string_view what) const {
    std::string where = file_;
    if (node.IsDefined() && node.Mark().line >= 0) {
      absl::StrAppend(&where, ":", node.Mark().line + 1);
    }
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", path, ": ", what));
  }

  // Null, missing and "" all mean "keep the default".
  static bool IsUnset(const YAML::Node& node) {
    return !node.IsDefined() || node.IsNull() || (node.IsScalar() && node.Scalar().empty());
  }

  // Fields a map section may hold, each with how to read it.
  using Field = std::function<absl::Status(const std::string& path, const YAML::Node& node)>;

  absl::Status Section(const std::string& path, const YAML::Node& node,
                       const std::map<std::string, Field>& fields) const {
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    if (!node.IsMap()) return Error(path, node, "expected a map of settings");
    for (const auto& entry : node) {
      std::string key = entry.first.as<std::string>();
      std::string child = absl::StrCat(path, ".", key);
      auto it = fields.find(key);
      if (it == fields.end()) {
        std::vector<std::string> known;
        for (const auto& [name, field] : fields) known.push_back(name);
        return Error(child, entry.first,
                     absl::StrCat("unknown key (known keys here: ", absl::StrJoin(known, ", "),
                                  "); check the spelling"));
      }
      RETURN_IF_ERROR(it->second(child, entry.second));
    }
    return absl::OkStatus();
  }

  Field Bool(bool* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      bool value;
      if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
        return Error(path, node, "expected true or false");
      }
      *out = value;
      return absl::OkStatus();
    };
  }

  // A Kubernetes object name; `allow_empty` for "use the release namespace".
  Field Name(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      if (!node.IsScalar()) return Error(path, node, "expected a name");
      if (!IsDnsName(node.Scalar())) {
        return Error(path, node,
                     absl::StrCat("\"", node.Scalar().substr(0, 80),
                                  "\" is not a valid Kubernetes name (lowercase letters, digits, "
                                  "'-' and '.')"));
      }
      *out = node.Scalar();
      return absl::OkStatus();
    };
  }

  Field SecretKey(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      if (!node.IsScalar()) return Error(path, node, "expected a secret key name");
      for (char c : node.Scalar()) {
        if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
          return Error(path, node, "a secret key may hold letters, digits, '-', '_' and '.' only");
        }
      }
      *out = node.Scalar();
      return absl::OkStatus();
    };
  }

  Field ClusterName(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      if (!node.IsScalar()) return Error(path, node, "expected a cluster name");
      if (absl::Status status = ValidateClusterName(node.Scalar()); !status.ok()) {
        return Error(path, node, status.message());
      }
      *out = node.Scalar();
      return absl::OkStatus();
    };
  }

  static bool IsHostPort(absl::string_view value) {
    size_t colon = value.rfind(':');
    int port = 0;
    return colon != absl::string_view::npos && colon != 0 && absl::SimpleAtoi(value.substr(colon + 1), &port) &&
           port >= 1 && port <= 65535;
  }

  // host:port, or several separated by commas.
  Field HostPorts(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      const std::string& value = node.IsScalar() ? node.Scalar() : "";
      for (absl::string_view address : absl::StrSplit(value, ',')) {
        if (!IsHostPort(address)) {
          return Error(path, node,
                       "expected host:port, e.g. mgmt.example.com:9900, or several separated by commas");
        }
      }
      *out = value;
      return absl::OkStatus();
    };
  }

  // A list of host:port, as a YAML sequence or one comma-separated string.
  Field HostPortList(std::vector<std::string>* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      std::vector<std::string> addresses;
      if (node.IsSequence()) {
        for (const auto& item : node) addresses.push_back(item.IsScalar() ? item.Scalar() : "");
      } else if (node.IsScalar()) {
        addresses = absl::StrSplit(node.Scalar(), ',');
      }
      if (addresses.empty()) return Error(path, node, "expected a list of host:port");
      for (const std::string& address : addresses) {
        if (!IsHostPort(address)) {
          return Error(path, node, absl::StrCat("\"", address.substr(0, 80), "\" is not host:port, e.g. etcd-0:2379"));
        }
      }
      *out = addresses;
      return absl::OkStatus();
    };
  }

  Field OneOf(std::string* out, std::vector<std::string> choices) const {
    return [this, out, choices](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      for (const std::string& choice : choices) {
        if (node.IsScalar() && node.Scalar() == choice) {
          *out = choice;
          return absl::OkStatus();
        }
      }
      return Error(path, node, absl::StrCat("expected one of: ", absl::StrJoin(choices, ", ")));
    };
  }

  // A file path (absolute, or relative to where the process runs).
  Field Path(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      if (!node.IsScalar()) return Error(path, node, "expected a file path");
      *out = node.Scalar();
      return absl::OkStatus();
    };
  }

  // A number in the open interval (0, 1); the chart's "" means default.
  Field Ratio(double* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      double value;
      if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value)) {
        return Error(path, node, "expected a number between 0 and 1, e.g. 0.5");
      }
      if (!(value > 0 && value < 1)) {
        return Error(path, node,
                     absl::StrCat(node.Scalar(), " is out of range: use a number strictly between "
                                                 "0 and 1 (the share of the lifetime left when "
                                                 "rotation starts)"));
      }
      *out = value;
      return absl::OkStatus();
    };
  }

  Field PositiveDuration(absl::Duration* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) -> absl::Status {
      if (IsUnset(node)) return absl::OkStatus();
      absl::Duration value;
      if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &value)) {
        return Error(path, node, "expected a duration such as 720h or 30m");
      }
      if (value <= absl::ZeroDuration()) return Error(path, node, "must be positive");
      *out = value;
      return absl::OkStatus();
    };
  }

  Field NameOnly(std::string* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) {
      return Section(path, node, {{"name", Name(out)}});
    };
  }

  Field TokenSecret(TokenSecretValues* out) const {
    return [this, out](const std::string& path, const YAML::Node& node) {
      return Section(path, node,
                     {{"key", SecretKey(&out->key)},
                      {"name", Name(&out->name)},
                      {"namespace", Name(&out->ns)}});
    };
  }

  // Reads `top.relay` with `fields`; the rest of the document is the chart's business.
  absl::Status Read(absl::string_view yaml, absl::string_view top,
                    const std::map<std::string, Field>& fields) const {
    try {
      YAML::Node root = YAML::Load(std::string(yaml));
      if (!root.IsDefined() || root.IsNull()) return absl::OkStatus();
      if (!root.IsMap()) return Error("(top level)", root, "expected a map of Helm values");
      YAML::Node section = root[std::string(top)];
      if (!section.IsDefined() || section.IsNull()) return absl::OkStatus();
      if (!section.IsMap()) return Error(std::string(top), section, "expected a map");
      return Section(absl::StrCat(top, ".relay"), section["relay"], fields);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_, ":", e.mark.line + 1, ":", e.mark.column + 1, ": not valid YAML: ", e.msg));
    }
  }

 private:
  std::string file_;
};

absl::StatusOr<std::string> ReadValuesFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read values file ", path,
                                            ": check the path given to --values"));
  }
  std::string data;
  data.resize(kMaxValuesFileBytes + 1);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() > kMaxValuesFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("values file ", path, " is larger than ", kMaxValuesFileBytes, " bytes"));
  }
  return data;
}

}  // namespace

absl::StatusOr<MgmtServerValues> ParseMgmtServerValues(absl::string_view yaml,
                                                       absl::string_view file_name) {
  MgmtServerValues values;
  ValuesReader reader(file_name);
  RETURN_IF_ERROR(reader.Read(
      yaml, "glooMgmtServer",
      {{"disableCa", reader.Bool(&values.disable_ca)},
       {"disableCaCertGeneration", reader.Bool(&values.disable_ca_cert_generation)},
       {"disableTokenGeneration", reader.Bool(&values.disable_token_generation)},
       {"pushRbac", reader.Bool(&values.push_rbac)},
       {"rootTlsSecret", reader.NameOnly(&values.root_tls_secret)},
       {"signingTlsSecret", reader.NameOnly(&values.signing_tls_secret)},
       {"tlsSecret", reader.NameOnly(&values.tls_secret)},
       {"tokenSecret", reader.TokenSecret(&values.token_secret)},
       {"clientCertTtl", reader.PositiveDuration(&values.client_cert_ttl)},
       {"state", [&](const std::string& path, const YAML::Node& node) {
          StateValues& state = values.state;
          return reader.Section(
              path, node,
              {{"backend", reader.OneOf(&state.backend, {"local", "etcd"})},
               {"etcd",
                [&](const std::string& etcd_path, const YAML::Node& etcd) {
                  return reader.Section(etcd_path, etcd,
                                        {{"endpoints", reader.HostPortList(&state.etcd_endpoints)},
                                         {"caFile", reader.Path(&state.etcd_ca_file)},
                                         {"certFile", reader.Path(&state.etcd_cert_file)},
                                         {"keyFile", reader.Path(&state.etcd_key_file)}});
                }},
               {"encryptionKeyFile", reader.Path(&state.encryption_key_file)},
               {"plaintextSecrets", reader.Bool(&state.plaintext_secrets)}});
        }}}));
  return values;
}

absl::StatusOr<AgentValues> ParseAgentValues(absl::string_view yaml, absl::string_view file_name) {
  AgentValues values;
  ValuesReader reader(file_name);
  RETURN_IF_ERROR(reader.Read(
      yaml, "glooAgent",
      {{"authority", reader.Name(&values.authority)},
       {"clientTlsSecret", reader.NameOnly(&values.client_tls_secret)},
       {"clientTlsSecretRotationGracePeriodRatio",
        reader.Ratio(&values.client_tls_secret_rotation_grace_period_ratio)},
       {"rootTlsSecret", reader.NameOnly(&values.root_tls_secret)},
       {"serverAddress", reader.HostPorts(&values.server_address)},
       {"tokenSecret", reader.TokenSecret(&values.token_secret)},
       {"cluster", reader.ClusterName(&values.cluster)}}));
  return values;
}

absl::StatusOr<MgmtServerValues> LoadMgmtServerValues(const std::string& path) {
  if (path.empty()) return MgmtServerValues{};
  ASSIGN_OR_RETURN(std::string yaml, ReadValuesFile(path));
  return ParseMgmtServerValues(yaml, path);
}

absl::StatusOr<AgentValues> LoadAgentValues(const std::string& path) {
  if (path.empty()) return AgentValues{};
  ASSIGN_OR_RETURN(std::string yaml, ReadValuesFile(path));
  return ParseAgentValues(yaml, path);
}

}  // namespace relay::config
