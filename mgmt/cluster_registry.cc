#include "mgmt/cluster_registry.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/names.h"
#include "common/refusal.h"
#include "common/sync_wait.h"
#include "common/status_macros.h"

namespace relay::mgmt {
namespace {

constexpr char kSnapshotPrefix[] = "relay-snapshot.";

absl::Status Deregistered(const std::string& cluster) {
  return WithRefusal(absl::PermissionDeniedError(absl::StrCat(
                         "cluster \"", cluster, "\" was deregistered: an operator must admit it again "
                         "(relayctl register --cluster ", cluster, ")")),
                     kRefusalDeregistered);
}

bool IsSha256Hex(absl::string_view digest) {
  return digest.size() == 64 && std::all_of(digest.begin(), digest.end(), [](char c) { return absl::ascii_isxdigit(c); });
}

// The milliseconds of issued_at past its whole second.
int64_t IssuedMillis(const ClusterRecord& record) {
  if (record.issued_at == absl::InfinitePast() || record.issued_at == absl::InfiniteFuture()) return 0;
  return absl::ToUnixMillis(record.issued_at) - absl::ToUnixSeconds(record.issued_at) * 1000;
}

// One line of `key=value` pairs separated by ';' (no value holds ';' or '=').
std::string Encode(const ClusterRecord& record) {
  return absl::StrCat("state=", record.deregistered ? "deregistered" : "registered",
                      ";current_serial=", record.current_serial,
                      ";pending_serials=", absl::StrJoin(record.pending_serials, ","),
                      ";not_after=", absl::ToUnixSeconds(record.not_after),
                      ";issued_at=", absl::ToUnixSeconds(record.issued_at),
                      ";registered_at=", absl::ToUnixSeconds(record.registered_at),
                      ";snapshot_version=", record.snapshot_version,
                      ";acked_version=", record.acked_version,
                      ";admitted=", record.admitted ? 1 : 0,
                      record.trust_bundle.empty() ? "" : ";trust_bundle=", record.trust_bundle,
                      // Below the second, when there is any: a root rotation's switch gate
                      // compares issuance times with the switch's, often within a second.
                      IssuedMillis(record) == 0 ? "" : absl::StrCat(";issued_at_ms=", IssuedMillis(record)));
}

bool IsSerial(absl::string_view serial) {
  if (serial.empty() || serial.size() > 64) return false;
  for (char c : serial) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The inverse of Encode, strictly: every field known, well-formed and present (but
// `admitted`, which older journals lack), so a damaged record is an error, never a
// record read differently.
absl::StatusOr<ClusterRecord> Decode(const std::string& cluster, absl::string_view text) {
  ClusterRecord record;
  record.name = cluster;
  std::set<std::string> seen;
  int64_t issued_millis = 0;
  for (absl::string_view field : absl::StrSplit(text, ';')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    const std::string key(kv.first);
    absl::string_view value = kv.second;
    if (!seen.insert(key).second) return absl::InvalidArgumentError(absl::StrCat("field \"", key, "\" twice"));
    int64_t number = 0;
    bool numeric = absl::SimpleAtoi(value, &number);
    if (key == "state") {
      if (value != "registered" && value != "deregistered") {
        return absl::InvalidArgumentError("state is neither registered nor deregistered");
      }
      record.deregistered = value == "deregistered";
    } else if (key == "current_serial") {
      if (!value.empty() && !IsSerial(value)) return absl::InvalidArgumentError("current_serial is not a serial");
      record.current_serial = std::string(value);
    } else if (key == "pending_serials") {
      for (absl::string_view serial : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        if (!IsSerial(serial)) return absl::InvalidArgumentError("pending_serials holds something that is not a serial");
        record.pending_serials.emplace_back(serial);
      }
      if (record.pending_serials.size() > ClusterRegistry::kMaxPendingSerials) {
        return absl::InvalidArgumentError("pending_serials holds too many serials");
      }
    } else if (key == "not_after" || key == "issued_at" || key == "registered_at") {
      if (!numeric) return absl::InvalidArgumentError(absl::StrCat(key, " is not a number"));
      absl::Time when = absl::FromUnixSeconds(number);
      (key == "not_after" ? record.not_after : key == "issued_at" ? record.issued_at : record.registered_at) = when;
    } else if (key == "issued_at_ms") {
      if (!numeric || number < 0 || number > 999) return absl::InvalidArgumentError("issued_at_ms is not 0-999");
      issued_millis = number;
    } else if (key == "snapshot_version" || key == "acked_version") {
      if (!numeric || number < 0) return absl::InvalidArgumentError(absl::StrCat(key, " is not a version"));
      (key == "snapshot_version" ? record.snapshot_version : record.acked_version) = number;
    } else if (key == "admitted") {
      if (value != "0" && value != "1") return absl::InvalidArgumentError("admitted is neither 0 nor 1");
      record.admitted = value == "1";
    } else if (key == "trust_bundle") {
      if (!IsSha256Hex(value)) {
        return absl::InvalidArgumentError("trust_bundle is not a SHA-256 digest");
      }
      record.trust_bundle = std::string(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown field \"", key.substr(0, 32), "\""));
    }
  }
  for (const char* required : {"state", "current_serial", "pending_serials", "not_after", "issued_at",
                               "registered_at", "snapshot_version", "acked_version"}) {
    if (seen.count(required) == 0) return absl::InvalidArgumentError(absl::StrCat("field \"", required, "\" is missing"));
  }
  record.issued_at += absl::Milliseconds(issued_millis);
  if (record.acked_version > record.snapshot_version) {
    return absl::InvalidArgumentError("acked_version is beyond snapshot_version");
  }
  return record;
}

// The record stored under `key` ("clusters/<name>").
absl::StatusOr<ClusterRecord> DecodeRecord(absl::string_view key, absl::string_view value) {
  absl::string_view name = key;
  if (!absl::ConsumePrefix(&name, ClusterRegistry::kKeyPrefix) || !IsDnsLabel(name)) {
    return absl::InvalidArgumentError("the key does not name a cluster (a DNS label)");
  }
  return Decode(std::string(name), value);
}

std::string KeyOf(absl::string_view cluster) { return absl::StrCat(ClusterRegistry::kKeyPrefix, cluster); }

// Attempts at a change whose compare-and-set lost to another writer (another replica).
constexpr int kMaxAttempts = 10;

absl::Status RegistrationRefused(const ClusterRecord& record, absl::Time now, const RegistrationRules& rules) {
  if (record.deregistered) return Deregistered(record.name);
  if (!record.HasValidCertificate(now) || rules.bound_token || record.admitted) return absl::OkStatus();
  std::string replace = absl::StrCat(
      "To hand the name to a new agent, admit it (relayctl register --cluster ", record.name,
      ") or give the agent a bootstrap token bound to it (relayctl register --cluster ", record.name,
      " --bootstrap_token_ttl=1h)");
  if (rules.live_stream) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cluster \"", record.name, "\" is connected with a certificate valid until ",
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", record.not_after, absl::UTCTimeZone()),
        ": the shared token cannot take over a cluster whose agent is online. ", replace));
  }
  if (rules.strict) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cluster \"", record.name, "\" holds a certificate valid until ",
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", record.not_after, absl::UTCTimeZone()),
        ", and this server does not let the shared token replace valid certificates "
        "(--strict_reregistration). ", replace));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateResourceName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 253 && name[0] != '.';
  for (char c : name) {
    ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "resource name \"", name.substr(0, 64),
      "\" is not a plain file name (letters, digits, '-', '_', '.', not starting with '.')"));
}

absl::StatusOr<std::unique_ptr<ClusterRegistry>> ClusterRegistry::Load(state::StateStore* state, std::string ns) {
  std::unique_ptr<ClusterRegistry> registry(new ClusterRegistry(state, std::move(ns)));
  ASSIGN_OR_RETURN(auto records, state->List(kKeyPrefix));
  {
    absl::MutexLock lock(&registry->mu_);
    for (const auto& [key, stored] : records) {
      absl::StatusOr<ClusterRecord> record = DecodeRecord(key, stored.value);
      if (!record.ok()) {
        return absl::DataLossError(absl::StrCat(state->Describe(key), " is damaged: ", record.status().message()));
      }
      Entry& entry = registry->clusters_[record->name];
      entry.record = *std::move(record);
      entry.revision = stored.revision;
    }
  }
  ClusterRegistry* self = registry.get();
  registry->watch_ = state->Watch(kKeyPrefix, [self](const state::Change& change) { self->OnStoreChange(change); });
  return registry;
}

ClusterRegistry::~ClusterRegistry() {
  watch_.reset();
  // Changes under way finish first: their callbacks still use the registry.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](ClusterRegistry* registry) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        for (const auto& [name, entry] : registry->clusters_) {
          if (entry.busy) return false;
        }
        return true;
      },
      this));
}

absl::Status ClusterRegistry::ValidateRecord(absl::string_view key, absl::string_view value) {
  if (!absl::StartsWith(key, kKeyPrefix)) return absl::OkStatus();
  return DecodeRecord(key, value).status();
}

void ClusterRegistry::OnStoreChange(const state::Change& change) {
  absl::string_view name = change.key;
  if (!absl::ConsumePrefix(&name, kKeyPrefix)) return;
  ClusterRecord before, after;
  {
    absl::MutexLock lock(&mu_);
    auto it = clusters_.find(std::string(name));
    if (it != clusters_.end() && it->second.revision >= change.revision) return;  // ours, or older
    // Our own write, seen by the watch before its acknowledgement: not another writer's.
    if (it != clusters_.end() && it->second.busy && change.value && *change.value == it->second.writing) return;
    if (!change.value) {
      if (it != clusters_.end() && !it->second.busy) clusters_.erase(it);
      return;
    }
    absl::StatusOr<ClusterRecord> record = DecodeRecord(change.key, *change.value);
    if (!record.ok()) return;  // a writer that is not us wrote something we cannot read: keep ours
    Entry& entry = clusters_[std::string(name)];
    before = entry.record;
    before.name = std::string(name);
    entry.record = *std::move(record);
    entry.revision = change.revision;
    after = entry.record;
  }
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_(before, after);
}

void ClusterRegistry::SetForeignChangeListener(ForeignChange listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void ClusterRegistry::UpdateAsync(const std::string& cluster, Change change, Done done) {
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = clusters_[cluster];
    entry.record.name = cluster;
    if (entry.busy) {
      entry.waiting.emplace_back(std::move(change), std::move(done));
      return;
    }
    entry.busy = true;
  }
  Run(cluster, std::move(change), std::move(done), 0);
}

void ClusterRegistry::Run(const std::string& cluster, Change change, Done done, int attempt) {
  ClusterRecord record;
  int64_t revision = 0;
  {
    absl::MutexLock lock(&mu_);
    const Entry& entry = clusters_[cluster];
    record = entry.record;
    revision = entry.revision;
  }
  bool save = false;
  absl::Status changed = change(record, &save);
  if (!changed.ok() || !save) {
    std::optional<Waiting> next = TakeNext(cluster);
    std::move(done)(changed);
    if (next) Run(cluster, std::move(next->first), std::move(next->second), 0);
    return;
  }
  std::string value = Encode(record);
  {
    absl::MutexLock lock(&mu_);
    clusters_[cluster].writing = value;
  }
  state_->CompareAndSet(
      KeyOf(cluster), std::move(value), revision,
      [this, cluster, record = std::move(record), change = std::move(change), done = std::move(done),
       attempt](absl::StatusOr<int64_t> written) mutable {
        if (written.ok()) {
          {
            absl::MutexLock lock(&mu_);
            Entry& entry = clusters_[cluster];
            entry.record = std::move(record);
            entry.revision = *written;
          }
          // Not busy any more before `done` runs (unless another change waits), so a
          // caller told "done" finds the cluster free; nothing here touches the registry
          // after `done` unless a change waits (and then it cannot be going away).
          std::optional<Waiting> next = TakeNext(cluster);
          std::move(done)(absl::OkStatus());
          if (next) Run(cluster, std::move(next->first), std::move(next->second), 0);
          return;
        }
        bool lost_race = absl::IsAborted(written.status()) || absl::IsAlreadyExists(written.status());
        if (lost_race && attempt + 1 < kMaxAttempts) {
          // Another writer came first: take its record and apply the change to it.
          absl::StatusOr<state::Record> current = state_->Get(KeyOf(cluster));
          absl::StatusOr<ClusterRecord> decoded =
              current.ok() ? DecodeRecord(KeyOf(cluster), current->value) : absl::StatusOr<ClusterRecord>(current.status());
          if (decoded.ok() || absl::IsNotFound(current.status())) {
            absl::MutexLock lock(&mu_);
            Entry& entry = clusters_[cluster];
            entry.record = decoded.ok() ? *std::move(decoded) : ClusterRecord{};
            entry.record.name = cluster;
            entry.revision = current.ok() ? current->revision : 0;
          }
          Run(cluster, std::move(change), std::move(done), attempt + 1);
          return;
        }
        std::optional<Waiting> next = TakeNext(cluster);
        std::move(done)(written.status());
        if (next) Run(cluster, std::move(next->first), std::move(next->second), 0);
      });
}

std::optional<ClusterRegistry::Waiting> ClusterRegistry::TakeNext(const std::string& cluster) {
  absl::MutexLock lock(&mu_);
  Entry& entry = clusters_[cluster];
  if (entry.waiting.empty()) {
    entry.busy = false;
    return std::nullopt;
  }
  Waiting next = std::move(entry.waiting.front());
  entry.waiting.pop_front();
  return next;
}

absl::Status ClusterRegistry::Update(const std::string& cluster, Change change) {
  return SyncWait<absl::Status>([&](auto callback) { UpdateAsync(cluster, std::move(change), std::move(callback)); });
}

absl::Status ClusterRegistry::CheckNotDeregistered(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it != clusters_.end() && it->second.record.deregistered) return Deregistered(cluster);
  return absl::OkStatus();
}

absl::StatusOr<RegistrationKind> ClusterRegistry::CheckRegistration(const std::string& cluster, absl::Time now,
                                                                     const RegistrationRules& rules) const {
  std::optional<ClusterRecord> record = Find(cluster);
  if (!record) return RegistrationKind::kFirst;
  RETURN_IF_ERROR(RegistrationRefused(*record, now, rules));
  return record->HasValidCertificate(now) ? RegistrationKind::kReplacesValid : RegistrationKind::kFirst;
}

void ClusterRegistry::RecordRegisteredAsync(const std::string& cluster, const std::string& serial,
                                            absl::Time not_after, absl::Time now, const RegistrationRules& rules,
                                            Done done) {
  UpdateAsync(
      cluster,
      [serial, not_after, now, rules](ClusterRecord& record, bool* save) {
        RETURN_IF_ERROR(RegistrationRefused(record, now, rules));
        // Everything issued before is refused from now on: a re-registration means the
        // previous holder lost its key (or never had a right to the name).
        record.current_serial = serial;
        record.pending_serials.clear();
        record.not_after = not_after;
        record.issued_at = now;
        record.registered_at = now;
        record.admitted = false;
        *save = true;
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status ClusterRegistry::RecordRegistered(const std::string& cluster, const std::string& serial,
                                               absl::Time not_after, absl::Time now, const RegistrationRules& rules) {
  return SyncWait<absl::Status>(
      [&](auto callback) { RecordRegisteredAsync(cluster, serial, not_after, now, rules, std::move(callback)); });
}

void ClusterRegistry::RecordIssuedAsync(const std::string& cluster, const std::string& serial, absl::Time not_after,
                                        absl::Time now, Done done) {
  UpdateAsync(
      cluster,
      [cluster, serial, not_after, now](ClusterRecord& record, bool* save) {
        if (record.deregistered) return Deregistered(cluster);
        if (record.current_serial.empty()) {
          record.current_serial = serial;
          record.registered_at = now;
        } else {
          record.pending_serials.push_back(serial);
          if (record.pending_serials.size() > kMaxPendingSerials) {
            record.pending_serials.erase(record.pending_serials.begin());
          }
        }
        // The latest certificate's expiry, also when it is earlier than the last one's
        // (the server's clientCertTtl was lowered).
        record.not_after = not_after;
        record.issued_at = now;
        *save = true;
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status ClusterRegistry::RecordIssued(const std::string& cluster, const std::string& serial,
                                           absl::Time not_after, absl::Time now) {
  return SyncWait<absl::Status>(
      [&](auto callback) { RecordIssuedAsync(cluster, serial, not_after, now, std::move(callback)); });
}

void ClusterRegistry::CheckIssuedSerialAsync(const std::string& cluster, const std::string& serial, Done done) {
  CheckIssuedSerialAsync(cluster, serial, std::move(done), /*refreshed=*/false);
}

bool ClusterRegistry::RefreshFromStore(const std::string& cluster) {
  absl::StatusOr<state::Record> stored = state_->Get(KeyOf(cluster));
  if (!stored.ok()) return false;
  absl::StatusOr<ClusterRecord> record = DecodeRecord(KeyOf(cluster), stored->value);
  if (!record.ok()) return false;
  absl::MutexLock lock(&mu_);
  Entry& entry = clusters_[cluster];
  if (entry.busy || entry.revision >= stored->revision) return false;
  entry.record = *std::move(record);
  entry.revision = stored->revision;
  return true;
}

void ClusterRegistry::CheckIssuedSerialAsync(const std::string& cluster, const std::string& serial, Done done,
                                             bool refreshed) {
  if (!refreshed) {
    // A certificate this registry does not know yet may come from another replica
    // whose write has not reached the watch: read the record again before refusing.
    done = [this, cluster, serial, done = std::move(done)](absl::Status status) mutable {
      if (RefusalOf(status) == kRefusalUnknownCertificate && RefreshFromStore(cluster)) {
        CheckIssuedSerialAsync(cluster, serial, std::move(done), /*refreshed=*/true);
        return;
      }
      std::move(done)(status);
    };
  }
  bool current = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = clusters_.find(cluster);
    current = it != clusters_.end() && !it->second.busy && !it->second.record.deregistered && !serial.empty() &&
              serial == it->second.record.current_serial;
  }
  if (current) {
    // The common case, the current certificate, needs no write: answered at once.
    std::move(done)(absl::OkStatus());
    return;
  }
  UpdateAsync(
      cluster,
      [cluster, serial](ClusterRecord& record, bool* save) {
        if (record.deregistered) return Deregistered(cluster);
        if (record.current_serial.empty() && record.pending_serials.empty()) {
          return WithRefusal(absl::PermissionDeniedError(absl::StrCat(
                                 "cluster \"", cluster, "\" is not registered with this server: register it "
                                 "again with the identity token")),
                             kRefusalUnknownCertificate);
        }
        if (!serial.empty() && serial == record.current_serial) return absl::OkStatus();
        auto pending = std::find(record.pending_serials.begin(), record.pending_serials.end(), serial);
        if (serial.empty() || pending == record.pending_serials.end()) {
          return WithRefusal(absl::PermissionDeniedError(absl::StrCat(
                                 "certificate ", serial, " of cluster \"", cluster,
                                 "\" is not one this server issued or it was replaced: register the agent again")),
                             kRefusalUnknownCertificate);
        }
        record.current_serial = serial;
        record.pending_serials.erase(record.pending_serials.begin(), pending + 1);
        *save = true;
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status ClusterRegistry::CheckIssuedSerial(const std::string& cluster, const std::string& serial) {
  return SyncWait<absl::Status>([&](auto callback) { CheckIssuedSerialAsync(cluster, serial, std::move(callback)); });
}

absl::Status ClusterRegistry::Deregister(const std::string& cluster) {
  return Update(cluster, [](ClusterRecord& record, bool* save) {
    record.deregistered = true;
    record.admitted = false;
    record.current_serial.clear();
    record.pending_serials.clear();
    *save = true;
    return absl::OkStatus();
  });
}

absl::Status ClusterRegistry::Admit(const std::string& cluster) {
  {
    absl::MutexLock lock(&mu_);
    auto it = clusters_.find(cluster);
    if (it == clusters_.end() || it->second.revision == 0 ||
        (!it->second.record.deregistered && it->second.record.admitted)) {
      return absl::OkStatus();
    }
  }
  return Update(cluster, [](ClusterRecord& record, bool* save) {
    *save = record.deregistered || !record.admitted;
    record.deregistered = false;
    record.admitted = true;
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> ClusterRegistry::PushSnapshot(const std::string& cluster,
                                                      const std::vector<SnapshotResource>& resources) {
  secrets::SecretData data;
  for (const SnapshotResource& resource : resources) {
    RETURN_IF_ERROR(ValidateResourceName(resource.name));
    if (!data.emplace(resource.name, resource.content).second) {
      return absl::InvalidArgumentError(absl::StrCat("resource \"", resource.name, "\" is given twice"));
    }
  }
  RETURN_IF_ERROR(secrets::ValidateSecretData(data));
  int64_t version = 0;
  secrets::SecretStore& secrets = state_->secrets();
  const std::string ns = ns_;
  RETURN_IF_ERROR(Update(cluster, [&](ClusterRecord& record, bool* save) -> absl::Status {
    if (record.deregistered) return Deregistered(cluster);
    record.snapshot_version++;
    version = record.snapshot_version;
    if (data.empty()) {
      absl::Status deleted = secrets.Delete(ns, kSnapshotPrefix + cluster);
      if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
    } else {
      RETURN_IF_ERROR(secrets.Put(ns, kSnapshotPrefix + cluster, data));
    }
    *save = true;
    return absl::OkStatus();
  }));
  return version;
}

absl::StatusOr<std::vector<SnapshotResource>> ClusterRegistry::LatestSnapshot(const std::string& cluster) const {
  absl::StatusOr<secrets::SecretData> data = state_->secrets().Get(ns_, kSnapshotPrefix + cluster);
  if (absl::IsNotFound(data.status())) return std::vector<SnapshotResource>{};
  if (!data.ok()) return data.status();
  std::vector<SnapshotResource> resources;
  for (auto& [name, content] : *data) resources.push_back({name, content});
  return resources;
}

void ClusterRegistry::RecordAckAsync(const std::string& cluster, int64_t version, Done done) {
  UpdateAsync(
      cluster,
      [cluster, version](ClusterRecord& record, bool* save) {
        if (version < 0 || version > record.snapshot_version) {
          return absl::InvalidArgumentError(absl::StrCat("snapshot version ", version,
                                                         " was never pushed to cluster \"", cluster,
                                                         "\" (the latest is ", record.snapshot_version, ")"));
        }
        if (version > record.acked_version) {
          record.acked_version = version;
          *save = true;
        }
        return absl::OkStatus();
      },
      std::move(done));
}

void ClusterRegistry::RecordTrustBundleAckAsync(const std::string& cluster, const std::string& digest, Done done) {
  UpdateAsync(
      cluster,
      [digest](ClusterRecord& record, bool* save) {
        if (!IsSha256Hex(digest)) {
          return absl::InvalidArgumentError("a trust bundle digest is 64 hex digits");
        }
        if (record.trust_bundle != digest) {
          record.trust_bundle = digest;
          *save = true;
        }
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status ClusterRegistry::RecordAck(const std::string& cluster, int64_t version) {
  return SyncWait<absl::Status>([&](auto callback) { RecordAckAsync(cluster, version, std::move(callback)); });
}

std::optional<ClusterRecord> ClusterRegistry::Find(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it == clusters_.end() || it->second.revision == 0) return std::nullopt;
  return it->second.record;
}

std::vector<ClusterRecord> ClusterRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<ClusterRecord> records;
  for (const auto& [name, entry] : clusters_) {
    if (entry.revision != 0) records.push_back(entry.record);
  }
  return records;
}

}  // namespace relay::mgmt
