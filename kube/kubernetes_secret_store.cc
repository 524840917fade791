#include "kube/kubernetes_secret_store.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/backoff.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "openssl/pem.h"
#include "openssl/x509.h"
#include "yaml-cpp/yaml.h"

namespace relay::kube {
namespace {

using json = nlohmann::json;
using secrets::SecretData;

constexpr absl::Duration kTokenRereadAfter = absl::Minutes(1);

absl::StatusOr<std::string> ReadWhole(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read the ", what, " ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// The bearer token, read again once a minute has passed or when the API refused it.
class TokenSource {
 public:
  TokenSource(std::string path, std::string inline_token)
      : path_(std::move(path)), inline_token_(std::move(inline_token)) {}

  absl::StatusOr<std::string> Get(bool reread) {
    if (path_.empty()) return inline_token_;
    absl::MutexLock lock(&mu_);
    if (reread || token_.empty() || absl::Now() - read_at_ >= kTokenRereadAfter) {
      ASSIGN_OR_RETURN(std::string token, ReadWhole(path_, "Kubernetes API token file"));
      token_ = std::string(absl::StripAsciiWhitespace(token));
      read_at_ = absl::Now();
    }
    return token_;
  }
  std::string Describe() const { return path_.empty() ? "the kubeconfig's inline token" : "the token in " + path_; }

 private:
  const std::string path_;
  const std::string inline_token_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time read_at_ ABSL_GUARDED_BY(mu_);
};

std::string SecretsPath(absl::string_view ns) { return absl::StrCat("/api/v1/namespaces/", ns, "/secrets"); }
std::string SecretPath(absl::string_view ns, absl::string_view name) {
  return absl::StrCat(SecretsPath(ns), "/", name);
}

// `kubernetes.io/tls` holds tls.crt and tls.key (ca.crt may ride along).
bool FitsTlsType(const SecretData& data) {
  if (!data.count("tls.crt") || !data.count("tls.key")) return false;
  for (const auto& [key, value] : data) {
    if (key != "tls.crt" && key != "tls.key" && key != "ca.crt") return false;
  }
  return true;
}

absl::StatusOr<SecretData> DecodeData(const json& secret, absl::string_view ns, absl::string_view name) {
  SecretData data;
  if (!secret.contains("data") || secret["data"].is_null()) return data;
  for (const auto& [key, value] : secret["data"].items()) {
    std::string decoded;
    if (!value.is_string() || !absl::Base64Unescape(value.get<std::string>(), &decoded)) {
      return absl::DataLossError(absl::StrCat("secret ", ns, "/", name, " key ", key, " is not base64"));
    }
    data[key] = std::move(decoded);
  }
  return data;
}

json SecretBody(absl::string_view name, const std::string& type, const SecretData& data,
                const std::string& resource_version) {
  json encoded = json::object();
  for (const auto& [key, value] : data) encoded[key] = absl::Base64Escape(value);
  json body = {{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", std::string(name)}}},
               {"type", type}, {"data", encoded}};
  if (!resource_version.empty()) body["metadata"]["resourceVersion"] = resource_version;
  return body;
}

std::string ResourceVersion(const json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) return "";
  const json& metadata = object["metadata"];
  return metadata.contains("resourceVersion") && metadata["resourceVersion"].is_string()
             ? metadata["resourceVersion"].get<std::string>()
             : "";
}

// The certificates of a PEM bundle as a new X509_STORE (null when there are none).
X509_STORE* CaStore(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  STACK_OF(X509_INFO)* infos = PEM_X509_INFO_read_bio(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!infos) return nullptr;
  X509_STORE* store = X509_STORE_new();
  for (int i = 0; i < sk_X509_INFO_num(infos); ++i) {
    X509_INFO* info = sk_X509_INFO_value(infos, i);
    if (info->x509) X509_STORE_add_cert(store, info->x509);
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  return store;
}

// The entry of `list` (a kubeconfig's clusters, users or contexts) called `name`.
YAML::Node Named(const YAML::Node& list, const std::string& name) {
  if (list && list.IsSequence()) {
    for (const YAML::Node& entry : list) {
      if (entry["name"] && entry["name"].as<std::string>() == name) return entry;
    }
  }
  return YAML::Node();
}

struct Answer {
  int status = 0;
  json body;
};

class KubernetesSecretStore final : public secrets::SecretStore {
 public:
  explicit KubernetesSecretStore(KubernetesOptions options)
      : options_(std::move(options)), token_(options_.token_file, options_.token) {}

  absl::StatusOr<SecretData> Get(absl::string_view ns, absl::string_view name) override {
    RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
    ASSIGN_OR_RETURN(Answer answer, Call("GET", SecretPath(ns, name), nullptr));
    if (answer.status != 200) return Refused(answer, "get", ns, name);
    return DecodeData(answer.body, ns, name);
  }

  absl::Status Put(absl::string_view ns, absl::string_view name, const SecretData& data) override {
    RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
    RETURN_IF_ERROR(secrets::ValidateSecretData(data));
    std::mt19937 random(std::random_device{}());
    for (int attempt = 0; attempt < options_.conflict_attempts; ++attempt) {
      if (attempt > 0) {
        absl::SleepFor(FullJitterBackoff(attempt, absl::Milliseconds(10), absl::Seconds(1),
                                         std::uniform_real_distribution<double>(0, 1)(random)));
      }
      ASSIGN_OR_RETURN(Answer current, Call("GET", SecretPath(ns, name), nullptr));
      if (current.status == 404) {
        json body = SecretBody(name, FitsTlsType(data) ? "kubernetes.io/tls" : "Opaque", data, "");
        ASSIGN_OR_RETURN(Answer created, Call("POST", SecretsPath(ns), &body));
        if (created.status == 201 || created.status == 200) return absl::OkStatus();
        if (created.status == 409) continue;  // created meanwhile: update that one
        return Refused(created, "create", ns, name);
      }
      if (current.status != 200) return Refused(current, "get", ns, name);
      std::string type = current.body.value("type", "Opaque");
      if (type == "kubernetes.io/tls" && !FitsTlsType(data)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "secret ", ns, "/", name, " is of type kubernetes.io/tls, which needs keys tls.crt and tls.key "
            "(and at most ca.crt besides), and Kubernetes does not change a secret's type: delete it first"));
      }
      json body = SecretBody(name, type, data, ResourceVersion(current.body));
      ASSIGN_OR_RETURN(Answer updated, Call("PUT", SecretPath(ns, name), &body));
      if (updated.status == 200) return absl::OkStatus();
      if (updated.status == 409 || updated.status == 404) continue;  // another writer came first
      return Refused(updated, "update", ns, name);
    }
    return absl::AbortedError(absl::StrCat("secret ", ns, "/", name, " kept changing under ",
                                           options_.conflict_attempts, " attempts to replace it (409 Conflict)"));
  }

  absl::Status Create(absl::string_view ns, absl::string_view name, const SecretData& data) override {
    RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
    RETURN_IF_ERROR(secrets::ValidateSecretData(data));
    json body = SecretBody(name, FitsTlsType(data) ? "kubernetes.io/tls" : "Opaque", data, "");
    ASSIGN_OR_RETURN(Answer created, Call("POST", SecretsPath(ns), &body));
    if (created.status == 201 || created.status == 200) return absl::OkStatus();
    return Refused(created, "create", ns, name);
  }

  absl::Status Delete(absl::string_view ns, absl::string_view name) override {
    RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
    ASSIGN_OR_RETURN(Answer deleted, Call("DELETE", SecretPath(ns, name), nullptr));
    if (deleted.status == 200 || deleted.status == 202) return absl::OkStatus();
    return Refused(deleted, "delete", ns, name);
  }

  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override {
    ASSIGN_OR_RETURN(Answer listed, Call("GET", SecretsPath(ns), nullptr));
    if (listed.status != 200) return Refused(listed, "list", ns, "");
    std::vector<std::string> names;
    for (const json& item : listed.body.value("items", json::array())) {
      names.push_back(item["metadata"].value("name", ""));
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::unique_ptr<secrets::SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                              std::function<void()> on_change) override;

  // One request; UNAVAILABLE when the API cannot be reached. A 401 reads the token
  // file again and retries once (a projected token may have just been rotated).
  absl::StatusOr<Answer> Call(const std::string& method, const std::string& path, const json* body) {
    for (int attempt = 0;; ++attempt) {
      ASSIGN_OR_RETURN(std::string token, token_.Get(attempt > 0));
      std::unique_ptr<httplib::Client> client = TakeClient();
      client->set_bearer_token_auth(token);
      const std::string payload = body ? body->dump() : "";
      httplib::Result result = method == "GET"    ? client->Get(path.c_str())
                               : method == "POST" ? client->Post(path.c_str(), payload, "application/json")
                               : method == "PUT"  ? client->Put(path.c_str(), payload, "application/json")
                                                  : client->Delete(path.c_str());
      if (!result) {
        return absl::UnavailableError(absl::StrCat("the Kubernetes API at ", options_.server, " did not answer (",
                                                   httplib::to_string(result.error()), ")"));
      }
      Answer answer;
      answer.status = result->status;
      answer.body = json::parse(result->body, nullptr, /*allow_exceptions=*/false);
      GiveBack(std::move(client));
      if (answer.status == 401 && attempt == 0) continue;
      return answer;
    }
  }

  // A client per request (an httplib client is not for concurrent requests), reused
  // when idle. Not kept alive: with cpp-httplib 0.11, a kept-alive connection that
  // carries PUT bodies under concurrency was seen to stall with both ends waiting (the
  // server reading a body the client had sent); see the session notes.
  std::unique_ptr<httplib::Client> TakeClient() {
    {
      absl::MutexLock lock(&pool_mu_);
      if (!idle_.empty()) {
        std::unique_ptr<httplib::Client> client = std::move(idle_.back());
        idle_.pop_back();
        return client;
      }
    }
    return NewClient(options_.timeout);
  }
  void GiveBack(std::unique_ptr<httplib::Client> client) {
    absl::MutexLock lock(&pool_mu_);
    if (idle_.size() < kIdleConnections) idle_.push_back(std::move(client));
  }

  std::unique_ptr<httplib::Client> NewClient(absl::Duration read_timeout) {
    auto client = std::make_unique<httplib::Client>(options_.server);
    if (!options_.ca_file.empty()) client->set_ca_cert_path(options_.ca_file.c_str());
    // The client's SSL_CTX owns the store; httplib 0.11 keeps a plain-HTTP client's
    // store without ever freeing it (found by --config=asan), so only HTTPS gets one.
    if (!options_.ca_pem.empty() && absl::StartsWith(options_.server, "https://")) {
      client->set_ca_cert_store(CaStore(options_.ca_pem));
    }
    client->set_connection_timeout(absl::ToChronoSeconds(options_.timeout));
    client->set_read_timeout(absl::ToChronoSeconds(read_timeout));
    client->set_write_timeout(absl::ToChronoSeconds(options_.timeout));
    return client;
  }

  // The API's refusal in our terms, with its message (names, never data).
  absl::Status Refused(const Answer& answer, absl::string_view verb, absl::string_view ns,
                       absl::string_view name) const {
    std::string message = answer.body.is_object() ? answer.body.value("message", "") : "";
    std::string what = absl::StrCat(verb, " secret ", ns, name.empty() ? "" : "/", name);
    switch (answer.status) {
      case 404:
        return absl::NotFoundError(absl::StrCat("cannot ", what, ": not found"));
      case 409:
        if (answer.body.is_object() && answer.body.value("reason", "") == "AlreadyExists") {
          return absl::AlreadyExistsError(absl::StrCat("cannot ", what, ": it already exists"));
        }
        return absl::AbortedError(absl::StrCat("cannot ", what, ": ", message));
      case 401:
        return absl::UnauthenticatedError(absl::StrCat("the Kubernetes API at ", options_.server,
                                                       " refused ", token_.Describe(), " (", what,
                                                       "): check the service account token"));
      case 403:
        return absl::PermissionDeniedError(absl::StrCat(
            "the Kubernetes API forbids this service account to ", what, ": ", message,
            ". Grant it in the component's Role (deploy/kubernetes/)"));
      case 422:
      case 400:
        return absl::InvalidArgumentError(absl::StrCat("the Kubernetes API refused to ", what, ": ", message));
      default:
        return absl::UnavailableError(absl::StrCat("the Kubernetes API answered ", answer.status, " to ", what,
                                                   message.empty() ? "" : ": ", message));
    }
  }

  const KubernetesOptions& options() const { return options_; }
  TokenSource& token() { return token_; }

 private:
  static constexpr size_t kIdleConnections = 16;
  const KubernetesOptions options_;
  TokenSource token_;
  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_ ABSL_GUARDED_BY(pool_mu_);
};

// List + watch of one secret, resuming from the last version seen; a 410 relists.
class KubernetesWatch final : public secrets::SecretWatch {
 public:
  KubernetesWatch(KubernetesSecretStore* store, std::string ns, std::string name, std::function<void()> on_change)
      : store_(store), ns_(std::move(ns)), name_(std::move(name)), on_change_(std::move(on_change)) {
    thread_ = std::thread([this] { Loop(); });
  }

  ~KubernetesWatch() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (client_) client_->stop();
    }
    stopped_.Notify();
    thread_.join();
  }

 private:
  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  // The list's resourceVersion, or "" when the API cannot be reached.
  std::string List() {
    absl::StatusOr<Answer> listed = store_->Call(
        "GET", absl::StrCat(SecretsPath(ns_), "?fieldSelector=metadata.name%3D", name_), nullptr);
    if (!listed.ok() || listed->status != 200) return "";
    return ResourceVersion(listed->body);
  }

  void Loop() {
    std::string version;
    bool listed_once = false;
    int failures = 0;
    std::mt19937 random(std::random_device{}());
    while (!Stopping()) {
      if (version.empty()) {
        version = List();
        if (!version.empty() && listed_once) on_change_();  // it may have changed meanwhile
        listed_once = listed_once || !version.empty();
      }
      bool expired = false;
      bool healthy = false;
      if (!version.empty()) {
        absl::StatusOr<std::string> token = store_->token().Get(false);
        std::unique_ptr<httplib::Client> client = store_->NewClient(absl::Minutes(5));
        if (token.ok()) client->set_bearer_token_auth(*token);
        {
          absl::MutexLock lock(&mu_);
          if (stopping_) return;
          client_ = client.get();
        }
        int status = 0;
        std::string pending;
        std::string path = absl::StrCat(SecretsPath(ns_), "?watch=true&allowWatchBookmarks=true&timeoutSeconds=300",
                                        "&fieldSelector=metadata.name%3D", name_, "&resourceVersion=", version);
        client->Get(
            path.c_str(),
            [&](const httplib::Response& response) {
              status = response.status;
              return true;
            },
            [&](const char* data, size_t length) {
              if (status != 200) {
                if (status == 410) expired = true;
                return true;
              }
              pending.append(data, length);
              size_t newline;
              while ((newline = pending.find('\n')) != std::string::npos) {
                json event = json::parse(pending.substr(0, newline), nullptr, /*allow_exceptions=*/false);
                pending.erase(0, newline + 1);
                healthy = true;
                std::string type = event.is_object() ? event.value("type", "") : "";
                if (type == "ERROR") {
                  if (event["object"].value("code", 0) == 410) expired = true;
                  return false;
                }
                if (!event.is_object() || !event.contains("object")) continue;
                std::string seen = ResourceVersion(event["object"]);
                if (!seen.empty()) version = seen;
                if (type == "ADDED" || type == "MODIFIED" || type == "DELETED") on_change_();
              }
              return !Stopping();
            });
        {
          absl::MutexLock lock(&mu_);
          client_ = nullptr;
        }
        if (status == 410) expired = true;
      }
      if (expired) {
        LogInfo("kubernetes_watch_relist", {{"secret", absl::StrCat(ns_, "/", name_)}});
        version.clear();
        continue;
      }
      failures = healthy ? 0 : failures + 1;
      if (failures > 0) {
        absl::Duration wait = FullJitterBackoff(failures, absl::Milliseconds(200), absl::Seconds(10),
                                                std::uniform_real_distribution<double>(0, 1)(random));
        if (stopped_.WaitForNotificationWithTimeout(wait)) return;
      }
    }
  }

  KubernetesSecretStore* const store_;
  const std::string ns_;
  const std::string name_;
  const std::function<void()> on_change_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  httplib::Client* client_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Notification stopped_;
  std::thread thread_;
};

std::unique_ptr<secrets::SecretWatch> KubernetesSecretStore::Watch(absl::string_view ns, absl::string_view name,
                                                                   std::function<void()> on_change) {
  return std::make_unique<KubernetesWatch>(this, std::string(ns), std::string(name), std::move(on_change));
}

}  // namespace

absl::StatusOr<KubernetesOptions> InClusterOptions(const std::string& service_account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port || !*host || !*port) {
    return absl::FailedPreconditionError(
        "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set): give "
        "--kubeconfig=FILE");
  }
  KubernetesOptions options;
  std::string address = host;
  if (address.find(':') != std::string::npos) address = "[" + address + "]";  // IPv6
  options.server = absl::StrCat("https://", address, ":", port);
  options.token_file = service_account_dir + "/token";
  options.ca_file = service_account_dir + "/ca.crt";
  RETURN_IF_ERROR(ReadWhole(options.token_file, "service account token").status());
  return options;
}

absl::StatusOr<KubernetesOptions> KubeconfigOptions(const std::string& path, std::string* ns) {
  ASSIGN_OR_RETURN(std::string text, ReadWhole(path, "kubeconfig"));
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  auto relative = [&](const std::string& file) { return file.empty() || file[0] == '/' ? file : dir + "/" + file; };
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", what));
  };
  try {
    YAML::Node config = YAML::Load(text);
    std::string context_name = config["current-context"] ? config["current-context"].as<std::string>() : "";
    if (context_name.empty()) return bad("no current-context");
    YAML::Node context = Named(config["contexts"], context_name)["context"];
    if (!context) return bad("no context named " + context_name);
    YAML::Node cluster = Named(config["clusters"], context["cluster"].as<std::string>(""))["cluster"];
    YAML::Node user = Named(config["users"], context["user"].as<std::string>(""))["user"];
    if (!cluster || !cluster["server"]) return bad("context " + context_name + " names no cluster with a server");
    KubernetesOptions options;
    options.server = cluster["server"].as<std::string>();
    if (cluster["certificate-authority-data"]) {
      if (!absl::Base64Unescape(cluster["certificate-authority-data"].as<std::string>(), &options.ca_pem)) {
        return bad("certificate-authority-data is not base64");
      }
    } else if (cluster["certificate-authority"]) {
      options.ca_file = relative(cluster["certificate-authority"].as<std::string>());
    }
    if (user && user["tokenFile"]) {
      options.token_file = relative(user["tokenFile"].as<std::string>());
    } else if (user && user["token"]) {
      options.token = user["token"].as<std::string>();
    } else {
      return bad("user of context " + context_name +
                 " has no token or tokenFile; relay authenticates with a bearer token only (client "
                 "certificates, exec and auth-provider plugins are not supported): use a service account token");
    }
    if (ns && context["namespace"]) *ns = context["namespace"].as<std::string>();
    return options;
  } catch (const YAML::Exception& error) {
    return bad(error.what());
  }
}

absl::StatusOr<std::unique_ptr<secrets::SecretStore>> OpenKubernetesSecretStore(KubernetesOptions options) {
  if (options.server.empty()) return absl::InvalidArgumentError("no Kubernetes API server address");
  // OpenSSL writes to sockets with write(2) (a TLS close_notify on a connection the
  // apiserver already closed, say), which raises SIGPIPE and would end the process; the
  // error it returns is handled. gRPC ignores SIGPIPE for the same reason.
  signal(SIGPIPE, SIG_IGN);
  auto store = std::make_unique<KubernetesSecretStore>(std::move(options));
  // Reachable, and the token accepted, before anyone relies on it.
  RETURN_IF_ERROR(store->token().Get(false).status());
  return store;
}

}  // namespace relay::kube
