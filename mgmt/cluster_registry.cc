#include "mgmt/cluster_registry.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/names.h"
#include "common/status_macros.h"

namespace relay::mgmt {
namespace {

constexpr char kClusterPrefix[] = "relay-cluster.";
constexpr char kSnapshotPrefix[] = "relay-snapshot.";

int64_t Int(const secrets::SecretData& data, const std::string& key) {
  auto it = data.find(key);
  int64_t value = 0;
  if (it != data.end()) (void)absl::SimpleAtoi(it->second, &value);
  return value;
}

std::string Str(const secrets::SecretData& data, const std::string& key) {
  auto it = data.find(key);
  return it == data.end() ? "" : it->second;
}

absl::Status Deregistered(const std::string& cluster) {
  return absl::PermissionDeniedError(absl::StrCat(
      "cluster \"", cluster, "\" was deregistered: an operator must admit it again "
      "(relayctl register --cluster ", cluster, ")"));
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
                                                                       std::string ns) {
  std::unique_ptr<ClusterRegistry> registry(new ClusterRegistry(store, std::move(ns)));
  ASSIGN_OR_RETURN(std::vector<std::string> names, store->List(registry->ns_));
  absl::MutexLock lock(&registry->mu_);
  for (const std::string& secret : names) {
    if (!absl::StartsWith(secret, kClusterPrefix)) continue;
    std::string cluster = secret.substr(strlen(kClusterPrefix));
    if (!IsDnsLabel(cluster)) continue;
    ASSIGN_OR_RETURN(secrets::SecretData data, store->Get(registry->ns_, secret));
    ClusterRecord record;
    record.name = cluster;
    record.deregistered = Str(data, "state") == "deregistered";
    record.current_serial = Str(data, "current_serial");
    for (absl::string_view serial : absl::StrSplit(Str(data, "pending_serials"), ',', absl::SkipEmpty())) {
      record.pending_serials.emplace_back(serial);
    }
    record.not_after = absl::FromUnixSeconds(Int(data, "not_after"));
    record.issued_at = absl::FromUnixSeconds(Int(data, "issued_at"));
    record.registered_at = absl::FromUnixSeconds(Int(data, "registered_at"));
    record.snapshot_version = Int(data, "snapshot_version");
    record.acked_version = Int(data, "acked_version");
    registry->clusters_[cluster] = record;
  }
  return registry;
}

absl::Status ClusterRegistry::Save(const ClusterRecord& record) {
  return store_->Put(ns_, kClusterPrefix + record.name,
                     {{"state", record.deregistered ? "deregistered" : "registered"},
                      {"current_serial", record.current_serial},
                      {"pending_serials", absl::StrJoin(record.pending_serials, ",")},
                      {"not_after", absl::StrCat(absl::ToUnixSeconds(record.not_after))},
                      {"issued_at", absl::StrCat(absl::ToUnixSeconds(record.issued_at))},
                      {"registered_at", absl::StrCat(absl::ToUnixSeconds(record.registered_at))},
                      {"snapshot_version", absl::StrCat(record.snapshot_version)},
                      {"acked_version", absl::StrCat(record.acked_version)}});
}

ClusterRecord& ClusterRegistry::Get(const std::string& cluster) {
  ClusterRecord& record = clusters_[cluster];
  record.name = cluster;
  return record;
}

absl::Status ClusterRegistry::CheckNotDeregistered(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it != clusters_.end() && it->second.deregistered) return Deregistered(cluster);
  return absl::OkStatus();
}

absl::Status ClusterRegistry::RecordIssued(const std::string& cluster, const std::string& serial,
                                           absl::Time not_after, absl::Time now) {
  absl::MutexLock lock(&mu_);
  ClusterRecord record = Get(cluster);
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
  RETURN_IF_ERROR(Save(record));
  clusters_[cluster] = record;
  return absl::OkStatus();
}

absl::Status ClusterRegistry::CheckIssuedSerial(const std::string& cluster,
                                                const std::string& serial) {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it == clusters_.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cluster \"", cluster, "\" is not registered with this server: register it again"));
  }
  ClusterRecord record = it->second;
  if (record.deregistered) return Deregistered(cluster);
  if (!serial.empty() && serial == record.current_serial) return absl::OkStatus();
  auto pending = std::find(record.pending_serials.begin(), record.pending_serials.end(), serial);
  if (!serial.empty() && pending != record.pending_serials.end()) {
    record.current_serial = serial;
    record.pending_serials.erase(record.pending_serials.begin(), pending + 1);
    RETURN_IF_ERROR(Save(record));
    it->second = record;
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "certificate ", serial, " of cluster \"", cluster,
      "\" is not one this server issued or it was replaced: register the agent again"));
}

absl::Status ClusterRegistry::Deregister(const std::string& cluster) {
  absl::MutexLock lock(&mu_);
  ClusterRecord record = Get(cluster);
  record.deregistered = true;
  record.current_serial.clear();
  record.pending_serials.clear();
  RETURN_IF_ERROR(Save(record));
  clusters_[cluster] = record;
  return absl::OkStatus();
}

absl::Status ClusterRegistry::Admit(const std::string& cluster) {
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it == clusters_.end() || !it->second.deregistered) return absl::OkStatus();
  ClusterRecord record = it->second;
  record.deregistered = false;
  RETURN_IF_ERROR(Save(record));
  it->second = record;
  return absl::OkStatus();
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
  absl::MutexLock lock(&mu_);
  ClusterRecord record = Get(cluster);
  if (record.deregistered) return Deregistered(cluster);
  record.snapshot_version++;
  if (data.empty()) {
    absl::Status deleted = store_->Delete(ns_, kSnapshotPrefix + cluster);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
  } else {
    RETURN_IF_ERROR(store_->Put(ns_, kSnapshotPrefix + cluster, data));
  }
  RETURN_IF_ERROR(Save(record));
  clusters_[cluster] = record;
  return record.snapshot_version;
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
  absl::MutexLock lock(&mu_);
  auto it = clusters_.find(cluster);
  if (it == clusters_.end() || version <= it->second.acked_version ||
      version > it->second.snapshot_version) {
    return absl::OkStatus();
  }
  ClusterRecord record = it->second;
  record.acked_version = version;
  RETURN_IF_ERROR(Save(record));
  it->second = record;
  return absl::OkStatus();
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
