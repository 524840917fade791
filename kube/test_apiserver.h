#ifndef RELAY_KUBE_TEST_APISERVER_H_
#define RELAY_KUBE_TEST_APISERVER_H_

// A strict stand-in for kube-apiserver's Secrets API, for tests: no kube-apiserver can
// be installed on these machines (Debian ships only kubectl and client libraries). It
// serves core/v1 Secrets on 127.0.0.1 over HTTP (cpp-httplib) and models, each as the
// Kubernetes API documents it:
//
// - Authentication: every request needs `Authorization: Bearer <token>`; without it,
//   or with another token, 401 and a Status with reason Unauthorized
//   (https://kubernetes.io/docs/reference/access-authn-authz/authentication/).
// - resourceVersion: opaque to clients, one counter for the whole store, increased by
//   every write; a write's response carries the object's new one
//   (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
// - Create (POST .../secrets): 201; 409 with reason AlreadyExists when the name exists.
// - Update (PUT .../secrets/NAME): with metadata.resourceVersion, 409 Conflict when it
//   is not the stored one (optimistic concurrency); without one, an unconditional
//   update, as Secrets allow; 404 when absent. Delete: 200 with a Status; 404.
//   (https://kubernetes.io/docs/reference/using-api/api-concepts/#conflicts,
//   https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#concurrency-control-and-consistency)
// - Validation (422, reason Invalid): names are DNS-1123 subdomains; data keys match
//   [-._a-zA-Z0-9]+; values are base64; `kubernetes.io/tls` needs tls.crt and tls.key;
//   a secret's type cannot change on update (field is immutable); at most 1 MiB of data (https://kubernetes.io/docs/concepts/configuration/secret/).
// - List: a SecretList whose metadata.resourceVersion is the store's.
// - Watch (?watch=true&resourceVersion=RV[&fieldSelector=metadata.name=N]
//   [&allowWatchBookmarks=true]): newline-delimited JSON events (ADDED, MODIFIED,
//   DELETED, BOOKMARK) after RV. When RV is older than the compacted history, 410 Gone:
//   as the HTTP status when the watch starts, or as an ERROR event carrying a Status
//   with code 410 when the history is compacted under a running watch (the two forms
//   clients meet; https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
//   A watch ends, the response complete and without an event, after timeoutSeconds; without
//   it, after a random time between --min-request-timeout (1800 s) and twice that, as
//   kube-apiserver does (apiserver/pkg/endpoints/handlers/get.go, ListResource): a
//   client must watch again from the last version it saw.
//
// - Authorization (RBAC), when rules are given: a request is allowed when a rule grants
//   its verb (get, list, watch, create, update, delete) on secrets; a rule with
//   resourceNames matches only requests naming one of them — list and watch only with
//   fieldSelector=metadata.name=<that name>, and never create, whose name is not known
//   at authorization time; otherwise 403 Forbidden
//   (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources).
// - TLS (optional): HTTPS with a certificate for 127.0.0.1 and localhost under a CA of
//   its own (ca_pem()), as a cluster's CA bundle.
//
// Test hooks: Compact() (forget history), InjectConflicts(n) (the next n updates answer
// 409 as if another writer came first), Stop()/Start() (down and back on the same port),
// EndWatches() (every running watch ends now, as at its timeout).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace httplib {
class Server;
}

namespace relay::kube::testing {

class TestApiServer {
 public:
  // One rule of a Role, for secrets.
  struct Rule {
    std::vector<std::string> verbs;
    std::vector<std::string> resource_names;  // empty: every secret
  };
  struct Options {
    std::string token = "test-bearer-token";
    absl::Duration bookmark_interval = absl::Seconds(1);
    // kube-apiserver's --min-request-timeout: how long a watch without timeoutSeconds
    // may run at least.
    absl::Duration min_request_timeout = absl::Seconds(1800);
    // Unset: every authenticated request is allowed. Set: only what a rule grants.
    std::optional<std::vector<Rule>> rules;
    bool tls = false;
    int port = 0;  // 0: a free one
  };

  static absl::StatusOr<std::unique_ptr<TestApiServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<TestApiServer>> Start() { return Start(Options()); }
  ~TestApiServer();

  // http://127.0.0.1:<port>, or https:// with tls.
  std::string url() const;
  int port() const { return port_; }
  // With tls: the CA that signed its certificate (PEM).
  const std::string& ca_pem() const { return ca_pem_; }
  const std::string& token() const { return options_.token; }

  // Forgets every event so far: a watch from an older resourceVersion gets 410 when it
  // starts, and every running watch gets an ERROR event with 410 and ends (as when the
  // apiserver's watch cache drops a watcher that fell behind).
  void Compact();
  // The next `count` updates (PUT) are refused 409 Conflict.
  void InjectConflicts(int count);
  // From now on every `n`th update is refused 409 Conflict (0: none), as if another
  // writer had come first.
  void InjectConflictEvery(int n);
  // Every running watch ends now, cleanly (as when its timeout comes): no event, the
  // response complete.
  void EndWatches();
  // Down (connections refused, watches cut) and back on the same port, state kept.
  void Stop();
  absl::Status Restart();

  // Stores a secret as an administrator's `kubectl apply` would (no RBAC, validated
  // like a create): `data` holds base64 values. INVALID_ARGUMENT saying what is wrong.
  absl::Status Seed(const std::string& ns, const std::string& name, const std::string& type,
                    const std::map<std::string, std::string>& data);

  // How many requests of each kind it answered (e.g. "LIST", "WATCH", "PUT 409").
  int64_t Count(const std::string& what) const;

 private:
  struct Stored {
    std::string type;
    std::map<std::string, std::string> data;  // base64 values, as sent
    uint64_t resource_version = 0;
    uint64_t uid = 0;
  };
  struct Event {
    std::string type;  // ADDED, MODIFIED, DELETED
    std::string ns;
    std::string name;
    Stored object;
  };

  explicit TestApiServer(Options options) : options_(std::move(options)) {}
  absl::Status Listen();
  void Routes();
  std::string SecretJson(const std::string& ns, const std::string& name, const Stored& secret) const;
  void Counted(const std::string& what);

  const Options options_;
  // Forbidden: why (empty when the rules allow it).
  std::string Forbidden(const std::string& verb, const std::string& name, const std::string& field_selector) const;
  absl::Status MakeCertificate();

  int port_ = 0;
  std::string ca_pem_;
  std::string cert_pem_;
  std::string key_pem_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;  // events at or before it are gone
  uint64_t next_uid_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::pair<std::string, std::string>, Stored> secrets_ ABSL_GUARDED_BY(mu_);
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  int conflicts_to_inject_ ABSL_GUARDED_BY(mu_) = 0;
  int conflict_every_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t puts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;   // bumped by Stop: running watches end
  uint64_t compactions_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by Compact: running watches get 410
  uint64_t watch_ends_ ABSL_GUARDED_BY(mu_) = 0;   // bumped by EndWatches: running watches end
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay::kube::testing

#endif  // RELAY_KUBE_TEST_APISERVER_H_
