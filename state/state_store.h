#ifndef RELAY_STATE_STATE_STORE_H_
#define RELAY_STATE_STATE_STORE_H_

// The one seam for everything the management server keeps: cluster records (with their
// serial pins and revocations), bootstrap-token hashes, snapshots, and the CA, server
// and token secrets. Backends: local (the embedded default: a checksummed journal and
// the directory secret store, locked to one process), memory (unit tests), and, next,
// etcd (several replicas). One conformance suite (conformance.h) holds every backend
// to the same contract.
//
// Records are small values under keys such as "clusters/east". Every record carries a
// revision; the one way to write is compare-and-set against the revision read, which
// gives create-if-absent (expected revision 0) and, built on it, consume-one-use. A
// write is acknowledged once it is durable. Watches report changes, including (on
// shared backends) those other processes make.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "secrets/secret_store.h"

namespace relay::state {

// Longest record value; snapshots and secrets go through secrets() instead.
inline constexpr size_t kMaxRecordBytes = 64 * 1024;

struct Record {
  std::string value;
  int64_t revision = 0;  // grows with every write to the store; 0 never names a record
};

struct Change {
  std::string key;
  std::optional<std::string> value;  // nullopt: deleted
  int64_t revision = 0;
};

// Stops the watch when destroyed; no callback runs after the destructor returns.
class StateWatch {
 public:
  virtual ~StateWatch() = default;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // NOT_FOUND when the key has no record.
  virtual absl::StatusOr<Record> Get(absl::string_view key) = 0;

  // Every record whose key starts with `prefix`, by key.
  virtual absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) = 0;

  // Runs once a write is durable (with its new revision) or refused, on a thread of the
  // store's, never the caller's; it may call into the store again.
  using Done = absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&>;

  // Writes `value` (nullopt: deletes the record) when the key's revision is still
  // `expected_revision` (0: when the key has no record, i.e. create-if-absent). Refused
  // with ALREADY_EXISTS when expected 0 but the key exists, ABORTED when another write
  // came first (read again and retry), NOT_FOUND when deleting what is not there,
  // INVALID_ARGUMENT for a bad key or a value over kMaxRecordBytes or with a newline
  // (CheckCompareAndSet). Each write is atomic; writes to one key are ordered by
  // their revisions (compare-and-set makes them so), while writes to different keys made
  // before earlier ones were acknowledged may become durable in either order (a shared
  // backend sends them at once). UNAVAILABLE or DEADLINE_EXCEEDED when a shared
  // backend cannot be reached: the write may or may not have been made; read again
  // before retrying.
  virtual void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                             Done done) = 0;

  // The same, waiting for the outcome, which does not depend on the store's callback
  // thread: it may be called from a `done`. Not for gRPC callback threads.
  virtual absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                                       int64_t expected_revision) = 0;

  // `on_change` (on a store thread) for every durable change under `prefix` after this
  // call, in revision order.
  virtual std::unique_ptr<StateWatch> Watch(absl::string_view prefix,
                                            std::function<void(const Change&)> on_change) = 0;

  // Where a key's record lives, for error messages an operator can act on (a journal
  // file and byte offset; an etcd key).
  virtual std::string Describe(absl::string_view key) = 0;

  // The secrets: CA, server and token secrets, and each cluster's latest snapshot.
  virtual secrets::SecretStore& secrets() = 0;

  // Housekeeping for a backend that keeps every revision (etcd, whose history would
  // otherwise grow until it hits its space quota and refuses every write): forgets the
  // revisions older than the one that was current at the previous call, as
  // kube-apiserver compacts its etcd every --etcd-compaction-interval. One replica
  // calls it, periodically. Backends that compact themselves (the local journal) do
  // nothing.
  virtual absl::Status CompactHistory() { return absl::OkStatus(); }
};

// Keys are printable ASCII without spaces, '\t' or '\n', at most 256 bytes, and do not
// start with '/'.
absl::Status ValidateKey(absl::string_view key);

// The key and the value (at most kMaxRecordBytes, one line) of a write:
// INVALID_ARGUMENT, saying which, or OK.
absl::Status ValidateWrite(absl::string_view key, const std::optional<std::string>& value);

// What every backend checks before a compare-and-set, in this order and with these
// codes (see CompareAndSet): ValidateWrite, then the revision the key has now
// (`current_revision`, 0 when it has no record) against the one expected.
absl::Status CheckCompareAndSet(absl::string_view key, const std::optional<std::string>& value,
                                int64_t current_revision, int64_t expected_revision);

// Secrets by (namespace, name).
using SecretNames = std::set<std::pair<std::string, std::string>>;

// `records`, except that the secrets named in `names` live in `named_secrets` (for
// instance the CA, server and token secrets as Kubernetes Secrets) while the others
// (snapshots) stay in `records`' own. List(ns) answers from both, looking up the named
// ones one by one, so `named_secrets` needs no right to list.
std::unique_ptr<StateStore> WithSecretsIn(std::unique_ptr<StateStore> records,
                                          std::unique_ptr<secrets::SecretStore> named_secrets, SecretNames names);

// A store that lives in memory only: for unit tests of the services. `secrets` may be
// null (a memory secret store is made).
std::unique_ptr<StateStore> NewMemoryStateStore(std::unique_ptr<secrets::SecretStore> secrets = nullptr);

}  // namespace relay::state

#endif  // RELAY_STATE_STATE_STORE_H_
