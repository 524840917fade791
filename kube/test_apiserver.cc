#include "kube/test_apiserver.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "pki/ca.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace relay::kube::testing {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxSecretBytes = 1024 * 1024;

std::string StatusJson(int code, const std::string& reason, const std::string& message) {
  return json{{"kind", "Status"},     {"apiVersion", "v1"}, {"metadata", json::object()},
              {"status", "Failure"},  {"message", message}, {"reason", reason},
              {"code", code}}
      .dump();
}

void Fail(httplib::Response& response, int code, const std::string& reason, const std::string& message) {
  response.status = code;
  response.set_content(StatusJson(code, reason, message), "application/json");
}

// metadata.<field> as a string, or "".
std::string Metadata(const json& body, const std::string& field) {
  if (!body.is_object() || !body.contains("metadata") || !body["metadata"].is_object()) return "";
  const json& metadata = body["metadata"];
  return metadata.contains(field) && metadata[field].is_string() ? metadata[field].get<std::string>() : "";
}

// DNS-1123 subdomain: what metadata.name of a Secret must be.
bool ValidName(const std::string& name) {
  static const std::regex kSubdomain(R"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)");
  return !name.empty() && name.size() <= 253 && std::regex_match(name, kSubdomain);
}

bool ValidKey(const std::string& key) {
  static const std::regex kKey(R"([-._a-zA-Z0-9]+)");
  return key.size() <= 253 && key != "." && key != ".." && std::regex_match(key, kKey);
}

bool ValidBase64(const std::string& value) {
  static const std::regex kBase64(R"(([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)");
  return std::regex_match(value, kBase64);
}

// 422 reason Invalid, saying what, or "" when the body is a valid Secret.
std::string Invalid(const json& body, const std::string& name) {
  if (!body.is_object() || body.value("kind", "Secret") != "Secret") return "the body is not a Secret";
  if (!ValidName(name)) return "metadata.name: Invalid value: \"" + name + "\": a lowercase RFC 1123 subdomain";
  std::string type = body.value("type", "Opaque");
  const json data = body.value("data", json::object());
  if (!data.is_object()) return "data: must be an object";
  size_t bytes = 0;
  for (const auto& [key, value] : data.items()) {
    if (!ValidKey(key)) return "data[" + key + "]: a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
    if (!value.is_string() || !ValidBase64(value.get<std::string>())) return "data[" + key + "]: illegal base64 data";
    bytes += value.get<std::string>().size() * 3 / 4;
  }
  if (bytes > kMaxSecretBytes) return "data: Too long: must have at most 1048576 bytes";
  if (type == "kubernetes.io/tls" && (!data.contains("tls.crt") || !data.contains("tls.key"))) {
    return "data[tls.crt], data[tls.key]: Required value (type kubernetes.io/tls)";
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestApiServer>> TestApiServer::Start(Options options) {
  std::unique_ptr<TestApiServer> server(new TestApiServer(std::move(options)));
  server->port_ = server->options_.port;
  if (server->options_.tls) {
    if (absl::Status made = server->MakeCertificate(); !made.ok()) return made;
  }
  absl::Status listening = server->Listen();
  if (!listening.ok()) return listening;
  return server;
}

TestApiServer::~TestApiServer() { Stop(); }

std::string TestApiServer::url() const {
  return absl::StrCat(options_.tls ? "https" : "http", "://127.0.0.1:", port_);
}

absl::Status TestApiServer::MakeCertificate() {
  const absl::Time now = absl::Now();
  auto root_key = pki::GenerateKey();
  if (!root_key.ok()) return root_key.status();
  auto root = pki::CreateSelfSignedCertificate(root_key->get(), pki::RootCaSpec("test-apiserver-ca", now, absl::Hours(24)));
  if (!root.ok()) return root.status();
  auto root_pem = pki::CertificateToPem(root->get());
  if (!root_pem.ok()) return root_pem.status();
  auto issuer = pki::Issuer::Create(*std::move(root), *std::move(root_key), now);
  if (!issuer.ok()) return issuer.status();
  auto key = pki::GenerateKey();
  if (!key.ok()) return key.status();
  auto cert = (*issuer)->Issue(key->get(), pki::ServerSpec("kube-apiserver", {"localhost"}, {"127.0.0.1"}, now,
                                                         absl::Hours(24)));
  if (!cert.ok()) return cert.status();
  auto cert_pem = pki::CertificateToPem(cert->get());
  auto key_pem = pki::PrivateKeyToPem(key->get());
  if (!cert_pem.ok() || !key_pem.ok()) return absl::InternalError("test apiserver: cannot encode its certificate");
  ca_pem_ = *root_pem;
  cert_pem_ = *cert_pem;
  key_pem_ = *key_pem;
  return absl::OkStatus();
}

absl::Status TestApiServer::Seed(const std::string& ns, const std::string& name, const std::string& type,
                                 const std::map<std::string, std::string>& data) {
  json body = {{"metadata", {{"name", name}}}, {"type", type}, {"data", data}};
  if (std::string invalid = Invalid(body, name); !invalid.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("secret ", ns, "/", name, " is invalid: ", invalid));
  }
  absl::MutexLock lock(&mu_);
  Stored& stored = secrets_[{ns, name}];
  stored.type = type;
  stored.data = data;
  stored.resource_version = ++revision_;
  stored.uid = next_uid_++;
  events_.push_back({"ADDED", ns, name, stored});
  return absl::OkStatus();
}

std::string TestApiServer::Forbidden(const std::string& verb, const std::string& name,
                                     const std::string& field_selector) const {
  if (!options_.rules) return "";
  for (const Rule& rule : *options_.rules) {
    bool verb_granted = false;
    for (const std::string& granted : rule.verbs) verb_granted = verb_granted || granted == verb || granted == "*";
    if (!verb_granted) continue;
    if (rule.resource_names.empty()) return "";
    if (verb == "create") continue;  // never restricted by name: the name is not known yet
    std::string named = name;
    if (verb == "list" || verb == "watch") {
      named = absl::StartsWith(field_selector, "metadata.name=") ? field_selector.substr(14) : "";
    }
    for (const std::string& allowed : rule.resource_names) {
      if (!named.empty() && allowed == named) return "";
    }
  }
  return absl::StrCat("cannot ", verb, " resource \"secrets\"", name.empty() ? "" : " named \"" + name + "\"");
}

void TestApiServer::Counted(const std::string& what) {
  absl::MutexLock lock(&mu_);
  counts_[what]++;
}

int64_t TestApiServer::Count(const std::string& what) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(what);
  return it == counts_.end() ? 0 : it->second;
}

void TestApiServer::Compact() {
  absl::MutexLock lock(&mu_);
  events_.clear();
  compacted_ = revision_;
  compactions_++;
}

void TestApiServer::EndWatches() {
  absl::MutexLock lock(&mu_);
  watch_ends_++;
}

void TestApiServer::InjectConflicts(int count) {
  absl::MutexLock lock(&mu_);
  conflicts_to_inject_ = count;
}

void TestApiServer::InjectConflictEvery(int n) {
  absl::MutexLock lock(&mu_);
  conflict_every_ = n;
}

void TestApiServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    generation_++;  // running watches end
  }
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

absl::Status TestApiServer::Restart() {
  Stop();
  return Listen();
}

absl::Status TestApiServer::Listen() {
  if (options_.tls) {
    // SSLServer takes files: they live in the test's temporary directory.
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/test-apiserver-", getpid(), "-", reinterpret_cast<uintptr_t>(this));
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/tls.crt") << cert_pem_;
    std::ofstream(dir + "/tls.key") << key_pem_;
    auto tls = std::make_unique<httplib::SSLServer>((dir + "/tls.crt").c_str(), (dir + "/tls.key").c_str());
    if (!tls->is_valid()) return absl::InternalError("test apiserver: cannot load its TLS certificate");
    server_ = std::move(tls);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  // Watches hold a thread each for their life.
  server_->new_task_queue = [] { return new httplib::ThreadPool(64); };
  Routes();
  if (port_ == 0) {
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) return absl::InternalError("test apiserver: cannot bind 127.0.0.1");
  } else if (!server_->bind_to_port("127.0.0.1", port_)) {
    return absl::InternalError(absl::StrCat("test apiserver: cannot bind 127.0.0.1:", port_, " again"));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // Bound and listening already (httplib listens in bind): connections wait in the backlog.
  return absl::OkStatus();
}

std::string TestApiServer::SecretJson(const std::string& ns, const std::string& name, const Stored& secret) const {
  json data = json::object();
  for (const auto& [key, value] : secret.data) data[key] = value;
  return json{{"kind", "Secret"},
              {"apiVersion", "v1"},
              {"metadata",
               {{"name", name},
                {"namespace", ns},
                {"uid", absl::StrCat("00000000-0000-0000-0000-", secret.uid)},
                {"resourceVersion", absl::StrCat(secret.resource_version)}}},
              {"type", secret.type},
              {"data", data}}
      .dump();
}

void TestApiServer::Routes() {
  const std::string collection = R"(/api/v1/namespaces/([^/]+)/secrets)";
  const std::string item = collection + R"(/([^/]+))";

  server_->set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
    if (request.get_header_value("Authorization") != "Bearer " + options_.token) {
      Counted("401");
      Fail(response, 401, "Unauthorized", "Unauthorized");
      return httplib::Server::HandlerResponse::Handled;
    }
    static const std::regex kItem(R"(/api/v1/namespaces/[^/]+/secrets/([^/]+))");
    std::smatch match;
    std::string name, verb;
    if (std::regex_match(request.path, match, kItem)) {
      name = match[1];
      verb = request.method == "GET" ? "get" : request.method == "PUT" ? "update" : request.method == "DELETE" ? "delete" : "";
    } else {
      const bool watch = request.get_param_value("watch") == "true" || request.get_param_value("watch") == "1";
      verb = request.method == "POST" ? "create" : watch ? "watch" : "list";
    }
    if (std::string why = Forbidden(verb, name, request.get_param_value("fieldSelector")); !why.empty()) {
      Counted("403");
      Fail(response, 403, "Forbidden",
           absl::StrCat("secrets is forbidden: User \"system:serviceaccount:test\" ", why));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  server_->Get(item, [this](const httplib::Request& request, httplib::Response& response) {
    Counted("GET");
    const std::string ns = request.matches[1], name = request.matches[2];
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find({ns, name});
    if (it == secrets_.end()) return Fail(response, 404, "NotFound", "secrets \"" + name + "\" not found");
    response.set_content(SecretJson(ns, name, it->second), "application/json");
  });

  server_->Post(collection, [this](const httplib::Request& request, httplib::Response& response) {
    Counted("POST");
    const std::string ns = request.matches[1];
    json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    std::string name = Metadata(body, "name");
    if (std::string invalid = Invalid(body, name); !invalid.empty()) {
      return Fail(response, 422, "Invalid", "Secret \"" + name + "\" is invalid: " + invalid);
    }
    absl::MutexLock lock(&mu_);
    if (secrets_.count({ns, name})) {
      counts_["POST 409"]++;
      return Fail(response, 409, "AlreadyExists", "secrets \"" + name + "\" already exists");
    }
    Stored& stored = secrets_[{ns, name}];
    stored.type = body.value("type", "Opaque");
    const json data = body.value("data", json::object());
    for (const auto& [key, value] : data.items()) stored.data[key] = value.get<std::string>();
    stored.resource_version = ++revision_;
    stored.uid = next_uid_++;
    events_.push_back({"ADDED", ns, name, stored});
    response.status = 201;
    response.set_content(SecretJson(ns, name, stored), "application/json");
  });

  server_->Put(item, [this](const httplib::Request& request, httplib::Response& response) {
    Counted("PUT");
    const std::string ns = request.matches[1], name = request.matches[2];
    json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (std::string invalid = Invalid(body, name); !invalid.empty()) {
      return Fail(response, 422, "Invalid", "Secret \"" + name + "\" is invalid: " + invalid);
    }
    if (!Metadata(body, "name").empty() && Metadata(body, "name") != name) {
      return Fail(response, 400, "BadRequest", "the name of the object does not match the name on the URL");
    }
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find({ns, name});
    if (it == secrets_.end()) return Fail(response, 404, "NotFound", "secrets \"" + name + "\" not found");
    std::string expected = Metadata(body, "resourceVersion");
    const std::string conflict = "Operation cannot be fulfilled on secrets \"" + name +
                                 "\": the object has been modified; please apply your changes to the latest "
                                 "version and try again";
    const bool injected = conflict_every_ > 0 && ++puts_ % conflict_every_ == 0;
    if (injected || conflicts_to_inject_ > 0) {
      if (!injected) conflicts_to_inject_--;
      counts_["PUT 409"]++;
      return Fail(response, 409, "Conflict", conflict);
    }
    if (!expected.empty() && expected != absl::StrCat(it->second.resource_version)) {
      counts_["PUT 409"]++;
      return Fail(response, 409, "Conflict", conflict);
    }
    Stored& stored = it->second;
    if (body.value("type", stored.type) != stored.type) {
      return Fail(response, 422, "Invalid", "Secret \"" + name + "\" is invalid: type: Invalid value: \"" +
                                               body.value("type", "") + "\": field is immutable");
    }
    stored.data.clear();
    const json data = body.value("data", json::object());
    for (const auto& [key, value] : data.items()) stored.data[key] = value.get<std::string>();
    stored.resource_version = ++revision_;
    events_.push_back({"MODIFIED", ns, name, stored});
    response.set_content(SecretJson(ns, name, stored), "application/json");
  });

  server_->Delete(item, [this](const httplib::Request& request, httplib::Response& response) {
    Counted("DELETE");
    const std::string ns = request.matches[1], name = request.matches[2];
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find({ns, name});
    if (it == secrets_.end()) return Fail(response, 404, "NotFound", "secrets \"" + name + "\" not found");
    Stored gone = it->second;
    secrets_.erase(it);
    gone.resource_version = ++revision_;
    events_.push_back({"DELETED", ns, name, gone});
    response.set_content(
        json{{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Success"}, {"metadata", json::object()}}.dump(),
        "application/json");
  });

  server_->Get(collection, [this](const httplib::Request& request, httplib::Response& response) {
    const std::string ns = request.matches[1];
    std::string only_name;
    if (request.has_param("fieldSelector")) {
      std::string selector = request.get_param_value("fieldSelector");
      const std::string prefix = "metadata.name=";
      if (selector.rfind(prefix, 0) != 0) {
        return Fail(response, 400, "BadRequest", "field label not supported: " + selector);
      }
      only_name = selector.substr(prefix.size());
    }
    const bool watch = request.get_param_value("watch") == "true" || request.get_param_value("watch") == "1";
    if (!watch) {
      Counted("LIST");
      absl::MutexLock lock(&mu_);
      json items = json::array();
      for (const auto& [key, secret] : secrets_) {
        if (key.first != ns || (!only_name.empty() && key.second != only_name)) continue;
        items.push_back(json::parse(SecretJson(key.first, key.second, secret)));
      }
      response.set_content(json{{"kind", "SecretList"},
                                {"apiVersion", "v1"},
                                {"metadata", {{"resourceVersion", absl::StrCat(revision_)}}},
                                {"items", items}}
                               .dump(),
                           "application/json");
      return;
    }
    Counted("WATCH");
    uint64_t from = 0;
    const std::string from_text = request.get_param_value("resourceVersion");
    if (!from_text.empty() && !absl::SimpleAtoi(from_text, &from)) {
      return Fail(response, 400, "BadRequest", "invalid resourceVersion: " + from_text);
    }
    const bool bookmarks = request.get_param_value("allowWatchBookmarks") == "true";
    int64_t timeout_seconds = 0;
    const std::string timeout_text = request.get_param_value("timeoutSeconds");
    if (!timeout_text.empty() && (!absl::SimpleAtoi(timeout_text, &timeout_seconds) || timeout_seconds < 0)) {
      return Fail(response, 400, "BadRequest", "invalid timeoutSeconds: " + timeout_text);
    }
    struct WatchState {
      uint64_t position;
      uint64_t generation;
      uint64_t compactions;
      uint64_t watch_ends;
      absl::Time deadline;
      std::vector<std::string> initial;  // synthetic ADDED events for a watch from "now"
    };
    auto state = std::make_shared<WatchState>();
    absl::Duration lasts = absl::Seconds(timeout_seconds);
    if (timeout_seconds == 0) {
      absl::BitGen random;
      lasts = options_.min_request_timeout * absl::Uniform(random, 1.0, 2.0);
    }
    state->deadline = absl::Now() + lasts;
    {
      absl::MutexLock lock(&mu_);
      if (from != 0 && from < compacted_) {
        counts_["WATCH 410"]++;
        return Fail(response, 410, "Expired",
                    absl::StrCat("too old resource version: ", from, " (", compacted_, ")"));
      }
      state->position = from == 0 ? revision_ : from;
      state->generation = generation_;
      state->compactions = compactions_;
      state->watch_ends = watch_ends_;
      if (from == 0) {
        for (const auto& [key, secret] : secrets_) {
          if (key.first != ns || (!only_name.empty() && key.second != only_name)) continue;
          state->initial.push_back(
              json{{"type", "ADDED"}, {"object", json::parse(SecretJson(key.first, key.second, secret))}}.dump() + "\n");
        }
      }
    }
    response.set_chunked_content_provider(
        "application/json", [this, state, ns, only_name, bookmarks](size_t, httplib::DataSink& sink) {
          std::vector<std::string> lines;
          lines.swap(state->initial);
          bool end = false;
          {
            absl::MutexLock lock(&mu_);
            auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
              return !lines.empty() || generation_ != state->generation || compactions_ != state->compactions ||
                     watch_ends_ != state->watch_ends ||
                     (!events_.empty() && events_.back().object.resource_version > state->position);
            };
            mu_.AwaitWithTimeout(absl::Condition(&ready),
                                 std::max(absl::ZeroDuration(),
                                          std::min(options_.bookmark_interval, state->deadline - absl::Now())));
            if (generation_ != state->generation) return false;  // the server went down: cut
            if (watch_ends_ != state->watch_ends || absl::Now() >= state->deadline) {
              counts_["WATCH END"]++;
              end = true;
            } else if (compactions_ != state->compactions) {
              counts_["WATCH ERROR 410"]++;
              lines.push_back(json{{"type", "ERROR"},
                                   {"object", json::parse(StatusJson(410, "Expired",
                                                                     "The resourceVersion for the provided watch is "
                                                                     "too old."))}}
                                  .dump() +
                              "\n");
              end = true;
            } else {
              for (const Event& event : events_) {
                if (event.object.resource_version <= state->position) continue;
                state->position = event.object.resource_version;
                if (event.ns != ns || (!only_name.empty() && event.name != only_name)) continue;
                lines.push_back(
                    json{{"type", event.type}, {"object", json::parse(SecretJson(event.ns, event.name, event.object))}}
                        .dump() +
                    "\n");
              }
              if (lines.empty() && bookmarks) {
                state->position = std::max(state->position, revision_);
                lines.push_back(json{{"type", "BOOKMARK"},
                                     {"object",
                                      {{"kind", "Secret"},
                                       {"apiVersion", "v1"},
                                       {"metadata", {{"resourceVersion", absl::StrCat(state->position)}}}}}}
                                    .dump() +
                                "\n");
              }
            }
          }
          for (const std::string& line : lines) {
            if (!sink.write(line.data(), line.size())) return false;
          }
          if (end) sink.done();
          return true;
        });
  });
}

}  // namespace relay::kube::testing
