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
#include "common/status_macros.h"

namespace relay::mgmt {
namespace {

constexpr char kSnapshotPrefix[] = "relay-snapshot.";
// Compact once the journal holds this many lines beyond one per cluster.
constexpr size_t kCompactAfter = 4096;

absl::Status Deregistered(const std::string& cluster) {
  return WithRefusal(absl::PermissionDeniedError(absl::StrCat(
                         "cluster \"", cluster, "\" was deregistered: an operator must admit it again "
                         "(relayctl register --cluster ", cluster, ")")),
                     kRefusalDeregistered);
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
                      ";admitted=", record.admitted ? 1 : 0);
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
    } else if (key == "snapshot_version" || key == "acked_version") {
      if (!numeric || number < 0) return absl::InvalidArgumentError(absl::StrCat(key, " is not a version"));
      (key == "snapshot_version" ? record.snapshot_version : record.acked_version) = number;
    } else if (key == "admitted") {
      if (value != "0" && value != "1") return absl::InvalidArgumentError("admitted is neither 0 nor 1");
      record.admitted = value == "1";
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown field \"", key.substr(0, 32), "\""));
    }
  }
  for (const char* required : {"state", "current_serial", "pending_serials", "not_after", "issued_at",
                               "registered_at", "snapshot_version", "acked_version"}) {
    if (seen.count(required) == 0) return absl::InvalidArgumentError(absl::StrCat("field \"", required, "\" is missing"));
  }
  if (record.acked_version > record.snapshot_version) {
    return absl::InvalidArgumentError("acked_version is beyond snapshot_version");
  }
  return record;
}

// A journal record: "<cluster>\t<fields>".
absl::StatusOr<ClusterRecord> DecodeLine(absl::string_view line) {
  std::pair<absl::string_view, absl::string_view> entry = absl::StrSplit(line, absl::MaxSplits('\t', 1));
  if (!IsDnsLabel(entry.first)) return absl::InvalidArgumentError("the cluster name is not a DNS label");
  return Decode(std::string(entry.first), entry.second);
}

// The cluster a (possibly damaged) line names, when it can still be read.
std::string ClusterNamed(absl::string_view line) {
  if (line.size() > 9 && line[8] == ' ') line.remove_prefix(9);  // a checksum
  absl::string_view name = line.substr(0, line.find('\t'));
  return IsDnsLabel(name) ? std::string(name) : std::string();
}

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

std::string RegistryJournalPath(const std::string& secrets_dir, const std::string& ns) {
  return absl::StrCat(secrets_dir, "/relay-registry.", ns, ".log");
}

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
                                                                       const std::string& journal_path,
                                                                       const std::string& repair_command) {
  std::string repair = repair_command.empty()
                           ? std::string()
                           : absl::StrCat(". The file is left as it is. Stop the server, keep a copy of the "
                                          "file, then run: ",
                                          repair_command,
                                          " (it keeps the damaged file aside and every whole record; it lists "
                                          "the records it drops, whose clusters you should check)");
  std::unique_ptr<ClusterRegistry> registry(new ClusterRegistry(store, std::move(ns)));
  std::vector<JournalRecord> records;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(journal_path, &records);
  if (!journal.ok()) {
    if (absl::IsDataLoss(journal.status())) {
      return absl::DataLossError(absl::StrCat("registry ", journal.status().message(), repair));
    }
    return journal.status();
  }
  registry->journal_ = *std::move(journal);
  {
    absl::MutexLock lock(&registry->mu_);
    for (const JournalRecord& line : records) {  // later lines win
      absl::StatusOr<ClusterRecord> record = DecodeLine(line.text);
      if (!record.ok()) {
        return absl::DataLossError(absl::StrCat("registry journal ", journal_path, " is damaged at byte ",
                                                line.offset, " (line ", line.line, "): ",
                                                record.status().message(), repair));
      }
      registry->clusters_[record->name] = *std::move(record);
    }
  }
  absl::MutexLock compaction(&registry->compaction_mu_);
  RETURN_IF_ERROR(registry->CompactLocked());
  return registry;
}

absl::StatusOr<JournalRepair> ClusterRegistry::RepairJournal(const std::string& journal_path, absl::Time now) {
  ASSIGN_OR_RETURN(JournalScan scan, ScanJournal(journal_path));
  JournalRepair repair;
  std::vector<std::string> kept;
  auto drop = [&](const JournalRecord& line, absl::string_view why, absl::string_view raw) {
    std::string cluster = ClusterNamed(raw);
    repair.dropped.push_back(absl::StrCat("byte ", line.offset, " (line ", line.line, ")",
                                          cluster.empty() ? "" : absl::StrCat(", cluster ", cluster), ": ",
                                          why));
  };
  std::vector<JournalRecord> lines = scan.records;
  lines.insert(lines.end(), scan.damaged.begin(), scan.damaged.end());
  std::sort(lines.begin(), lines.end(),
            [](const JournalRecord& a, const JournalRecord& b) { return a.offset < b.offset; });
  for (const JournalRecord& line : lines) {
    if (!line.problem.empty()) {
      drop(line, line.problem, line.text);
      continue;
    }
    absl::StatusOr<ClusterRecord> record = DecodeLine(line.text);
    if (!record.ok()) {
      drop(line, record.status().message(), line.text);
      continue;
    }
    kept.push_back(line.text);
  }
  repair.kept = kept.size();
  if (repair.dropped.empty() && scan.torn_tail_bytes == 0 && scan.checksummed) return repair;
  repair.damaged_copy = absl::StrCat(journal_path, ".damaged-", absl::ToUnixSeconds(now));
  if (rename(journal_path.c_str(), repair.damaged_copy.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot keep ", journal_path, " aside as ", repair.damaged_copy, ": ",
                                            std::strerror(errno)));
  }
  RETURN_IF_ERROR(WriteJournalFile(journal_path, kept));
  return repair;
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
        // The latest certificate's expiry, also when it is earlier than the last one's
        // (the server's clientCertTtl was lowered).
        record.not_after = not_after;
        record.issued_at = now;
        *save = true;
        return absl::OkStatus();
      },
      std::move(done));
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
                                            Journal::Done done) {
  UpdateAsync(
      cluster,
      [&](ClusterRecord& record, bool* save) {
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
                                               absl::Time not_after, absl::Time now,
                                               const RegistrationRules& rules) {
  absl::Notification durable;
  absl::Status result;
  RecordRegisteredAsync(cluster, serial, not_after, now, rules, [&](absl::Status status) {
    result = std::move(status);
    durable.Notify();
  });
  durable.WaitForNotification();
  return result;
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
  });
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
    if (it == clusters_.end() || (!it->second.deregistered && it->second.admitted)) return absl::OkStatus();
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
    if (version < 0 || version > record.snapshot_version) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot version ", version, " was never pushed to cluster \"",
                                                     cluster, "\" (the latest is ", record.snapshot_version, ")"));
    }
    if (version > record.acked_version) {
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
