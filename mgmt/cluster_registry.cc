#include "mgmt/cluster_registry.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace relay::mgmt {
namespace {

constexpr char kSnapshotPrefix[] = "relay-snapshot.";
// Compact once the journal holds this many lines beyond one per cluster.
constexpr size_t kCompactAfter = 4096;

absl::Status Deregistered(const std::string& cluster) {
  return absl::PermissionDeniedError(absl::StrCat(
      "cluster \"", cluster, "\" was deregistered: an operator must admit it again "
      "(relayctl register --cluster ", cluster, ")"));
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
                      ";acked_version=", record.acked_version);
}

ClusterRecord Decode(const std::string& cluster, absl::string_view text) {
  ClusterRecord record;
  record.name = cluster;
  for (absl::string_view field : absl::StrSplit(text, ';')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    int64_t number = 0;
    bool numeric = absl::SimpleAtoi(kv.second, &number);
    if (kv.first == "state") record.deregistered = kv.second == "deregistered";
    if (kv.first == "current_serial") record.current_serial = std::string(kv.second);
    if (kv.first == "pending_serials") {
      for (absl::string_view serial : absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
        record.pending_serials.emplace_back(serial);
      }
    }
    if (!numeric) continue;
    if (kv.first == "not_after") record.not_after = absl::FromUnixSeconds(number);
    if (kv.first == "issued_at") record.issued_at = absl::FromUnixSeconds(number);
    if (kv.first == "registered_at") record.registered_at = absl::FromUnixSeconds(number);
    if (kv.first == "snapshot_version") record.snapshot_version = number;
    if (kv.first == "acked_version") record.acked_version = number;
  }
  return record;
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

absl::StatusOr<std::unique_ptr<ClusterRegistry>> ClusterRegistry::Load(secrets::SecretStore* store,
                                                                       std::string ns,
                                                                       const std::string& journal_path) {
  std::unique_ptr<ClusterRegistry> registry(new ClusterRegistry(store, std::move(ns)));
  std::vector<std::string> lines;
  ASSIGN_OR_RETURN(registry->journal_, Journal::Open(journal_path, &lines));
  {
    absl::MutexLock lock(&registry->mu_);
    for (const std::string& line : lines) {  // later lines win
      std::pair<std::string, std::string> entry = absl::StrSplit(line, absl::MaxSplits('\t', 1));
      if (!IsDnsLabel(entry.first)) continue;
      registry->clusters_[entry.first] = Decode(entry.first, entry.second);
    }
  }
  absl::MutexLock compaction(&registry->compaction_mu_);
  RETURN_IF_ERROR(registry->CompactLocked());
  return registry;
}

absl::Status ClusterRegistry::CompactLocked() {
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, record] : clusters_) lines.push_back(absl::StrCat(name, "\t", Encode(record)));
  }
  return journal_->Compact(lines);
}

absl::Status ClusterRegistry::Save(const ClusterRecord& record) {
  return journal_->Append(absl::StrCat(record.name, "\t", Encode(record)));
}

absl::Mutex* ClusterRegistry::ClusterLock(const std::string& cluster) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<absl::Mutex>& slot = cluster_locks_[cluster];
  if (!slot) slot = std::make_unique<absl::Mutex>();
  return slot.get();  // never erased, so it outlives the caller
}

void ClusterRegistry::MaybeCompact() {
  bool compact = false;
  {
    absl::MutexLock lock(&mu_);
    compact = journal_->appended() > kCompactAfter + clusters_.size();
  }
  if (!compact) return;
  absl::MutexLock compaction(&compaction_mu_);
  if (journal_->appended() > kCompactAfter + List().size()) {
    if (absl::Status status = CompactLocked(); !status.ok()) {
      // The records are still in the uncompacted journal; the next update tries again.
      LogWarning("registry_compaction_failed", {{"error", std::string(status.message())}});
    }
  }
}

ClusterRecord ClusterRegistry::RecordOrNew(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  ClusterRecord record = it != clusters_.end() ? it->second : ClusterRecord{};
  record.name = cluster;
  return record;
}

absl::Status ClusterRegistry::Update(
    const std::string& cluster, const std::function<absl::Status(ClusterRecord&, bool* save)>& change) {
  absl::Mutex* cluster_lock = ClusterLock(cluster);
  {
    absl::MutexLock cluster_guard(cluster_lock);
    absl::ReaderMutexLock compaction(&compaction_mu_);
    ClusterRecord record = RecordOrNew(cluster);
    bool save = false;
    RETURN_IF_ERROR(change(record, &save));
    if (!save) return absl::OkStatus();
    RETURN_IF_ERROR(Save(record));  // group-committed with concurrent updates
    absl::MutexLock lock(&mu_);
    clusters_[cluster] = std::move(record);
  }
  MaybeCompact();
  return absl::OkStatus();
}

void ClusterRegistry::UpdateAsync(const std::string& cluster,
                                  const std::function<absl::Status(ClusterRecord&, bool* save)>& change,
                                  Journal::Done done) {
  absl::Mutex* cluster_lock = ClusterLock(cluster);
  {
    absl::MutexLock cluster_guard(cluster_lock);
    absl::ReaderMutexLock compaction(&compaction_mu_);
    ClusterRecord record = RecordOrNew(cluster);
    bool save = false;
    absl::Status changed = change(record, &save);
    if (!changed.ok() || !save) {
      std::move(done)(changed);
      return;
    }
    // Queued under the cluster's lock, so this cluster's lines reach the file in order;
    // published at once, so the next update of the cluster builds on it.
    journal_->AppendAsync(absl::StrCat(record.name, "\t", Encode(record)), std::move(done));
    absl::MutexLock lock(&mu_);
    clusters_[cluster] = std::move(record);
  }
  MaybeCompact();
}

absl::Status ClusterRegistry::CheckNotDeregistered(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it != clusters_.end() && it->second.deregistered) return Deregistered(cluster);
  return absl::OkStatus();
}

absl::Status ClusterRegistry::RecordIssued(const std::string& cluster, const std::string& serial,
                                           absl::Time not_after, absl::Time now) {
  absl::Notification durable;
  absl::Status result;
  RecordIssuedAsync(cluster, serial, not_after, now, [&](absl::Status status) {
    result = std::move(status);
    durable.Notify();
  });
  durable.WaitForNotification();
  return result;
}

void ClusterRegistry::RecordIssuedAsync(const std::string& cluster, const std::string& serial,
                                        absl::Time not_after, absl::Time now, Journal::Done done) {
  UpdateAsync(
      cluster,
      [&](ClusterRecord& record, bool* save) {
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
        record.not_after = std::max(record.not_after, not_after);
        record.issued_at = now;
        *save = true;
        return absl::OkStatus();
      },
      std::move(done));
}

absl::Status ClusterRegistry::CheckIssuedSerial(const std::string& cluster,
                                                const std::string& serial) {
  {
    // The common case, the current certificate, needs no write.
    absl::MutexLock lock(&mu_);
    auto it = clusters_.find(cluster);
    if (it != clusters_.end() && !it->second.deregistered && !serial.empty() &&
        serial == it->second.current_serial) {
      return absl::OkStatus();
    }
  }
  return Update(cluster, [&](ClusterRecord& record, bool* save) {
    if (record.deregistered) return Deregistered(cluster);
    if (record.current_serial.empty() && record.pending_serials.empty()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cluster \"", cluster, "\" is not registered with this server: register it again"));
    }
    if (!serial.empty() && serial == record.current_serial) return absl::OkStatus();
    auto pending = std::find(record.pending_serials.begin(), record.pending_serials.end(), serial);
    if (serial.empty() || pending == record.pending_serials.end()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "certificate ", serial, " of cluster \"", cluster,
          "\" is not one this server issued or it was replaced: register the agent again"));
    }
    record.current_serial = serial;
    record.pending_serials.erase(record.pending_serials.begin(), pending + 1);
    *save = true;
    return absl::OkStatus();
  });
}

absl::Status ClusterRegistry::Deregister(const std::string& cluster) {
  return Update(cluster, [](ClusterRecord& record, bool* save) {
    record.deregistered = true;
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
    if (it == clusters_.end() || !it->second.deregistered) return absl::OkStatus();
  }
  return Update(cluster, [](ClusterRecord& record, bool* save) {
    *save = record.deregistered;
    record.deregistered = false;
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
  RETURN_IF_ERROR(Update(cluster, [&](ClusterRecord& record, bool* save) -> absl::Status {
    if (record.deregistered) return Deregistered(cluster);
    record.snapshot_version++;
    version = record.snapshot_version;
    if (data.empty()) {
      absl::Status deleted = store_->Delete(ns_, kSnapshotPrefix + cluster);
      if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
    } else {
      RETURN_IF_ERROR(store_->Put(ns_, kSnapshotPrefix + cluster, data));
    }
    *save = true;
    return absl::OkStatus();
  }));
  return version;
}

absl::StatusOr<std::vector<SnapshotResource>> ClusterRegistry::LatestSnapshot(
    const std::string& cluster) const {
  absl::StatusOr<secrets::SecretData> data = store_->Get(ns_, kSnapshotPrefix + cluster);
  if (absl::IsNotFound(data.status())) return std::vector<SnapshotResource>{};
  if (!data.ok()) return data.status();
  std::vector<SnapshotResource> resources;
  for (auto& [name, content] : *data) resources.push_back({name, content});
  return resources;
}

absl::Status ClusterRegistry::RecordAck(const std::string& cluster, int64_t version) {
  return Update(cluster, [&](ClusterRecord& record, bool* save) {
    if (version > record.acked_version && version <= record.snapshot_version) {
      record.acked_version = version;
      *save = true;
    }
    return absl::OkStatus();
  });
}

std::optional<ClusterRecord> ClusterRegistry::Find(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it == clusters_.end()) return std::nullopt;
  return it->second;
}

std::vector<ClusterRecord> ClusterRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<ClusterRecord> records;
  for (const auto& [name, record] : clusters_) records.push_back(record);
  return records;
}

}  // namespace relay::mgmt
