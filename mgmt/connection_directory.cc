#include "mgmt/connection_directory.h"

#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace relay::mgmt {

ConnectionDirectory::ConnectionDirectory(state::StateStore* store, std::string replica, absl::Duration ttl)
    : store_(store), replica_(std::move(replica)), ttl_(ttl) {
  connection_watch_ = store_->Watch(kConnections, [this](const state::Change& change) { OnConnectionChange(change); });
  replica_watch_ = store_->Watch(kReplicas, [this](const state::Change& change) { OnReplicaChange(change); });
  // What was there before the watches started.
  if (auto records = store_->List(kConnections); records.ok()) {
    for (const auto& [key, record] : *records) OnConnectionChange({key, record.value, record.revision});
  }
  if (auto records = store_->List(kReplicas); records.ok()) {
    for (const auto& [key, record] : *records) OnReplicaChange({key, record.value, record.revision});
  }
  Beat();
  heartbeat_ = std::thread([this] {
    absl::MutexLock lock(&stop_mu_);
    while (!stop_mu_.AwaitWithTimeout(absl::Condition(&stopping_), ttl_ / 3)) {
      stop_mu_.Unlock();
      Beat();
      stop_mu_.Lock();
    }
  });
}

ConnectionDirectory::~ConnectionDirectory() {
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  heartbeat_.join();
  connection_watch_.reset();
  replica_watch_.reset();
}

void ConnectionDirectory::Beat() {
  std::string key = absl::StrCat(kReplicas, replica_);
  std::string value = absl::StrCat(absl::ToUnixSeconds(absl::Now() + ttl_));
  absl::StatusOr<state::Record> current = store_->Get(key);
  int64_t revision = current.ok() ? current->revision : 0;
  absl::StatusOr<int64_t> written = store_->CompareAndSetAndWait(key, value, revision);
  if (!written.ok()) {
    LogWarning("replica_liveness_not_recorded", {{"replica", replica_}, {"error", std::string(written.status().message())}});
  }
}

void ConnectionDirectory::Connected(const std::string& cluster, const std::string& serial) {
  writes_.Post([this, cluster, value = absl::StrCat(replica_, "\t", serial)]() mutable { Write(cluster, value); });
}

void ConnectionDirectory::Disconnected(const std::string& cluster) {
  writes_.Post([this, cluster] { Write(cluster, std::nullopt); });
}

void ConnectionDirectory::Write(const std::string& cluster, std::optional<std::string> value) {
  std::string key = absl::StrCat(kConnections, cluster);
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<state::Record> current = store_->Get(key);
    if (!current.ok() && !absl::IsNotFound(current.status())) {
      last = current.status();
      break;
    }
    if (!value) {
      // Only our own entry: another replica may hold the cluster's newer stream.
      if (!current.ok() || !absl::StartsWith(current->value, absl::StrCat(replica_, "\t"))) return;
    } else if (current.ok() && current->value == *value) {
      return;
    }
    absl::StatusOr<int64_t> written = store_->CompareAndSetAndWait(key, value, current.ok() ? current->revision : 0);
    if (written.ok()) return;
    last = written.status();
    if (!absl::IsAborted(last) && !absl::IsAlreadyExists(last) && !absl::IsNotFound(last)) break;
  }
  LogWarning("connection_not_recorded", {{"cluster", cluster}, {"error", std::string(last.message())}});
}

void ConnectionDirectory::OnConnectionChange(const state::Change& change) {
  absl::string_view cluster = change.key;
  if (!absl::ConsumePrefix(&cluster, kConnections)) return;
  absl::MutexLock lock(&mu_);
  if (!change.value) {
    connections_.erase(std::string(cluster));
    return;
  }
  std::vector<std::string> fields = absl::StrSplit(*change.value, absl::MaxSplits('\t', 1));
  if (fields.size() != 2) return;
  connections_[std::string(cluster)] = Holder{fields[0], fields[1]};
}

void ConnectionDirectory::OnReplicaChange(const state::Change& change) {
  absl::string_view replica = change.key;
  if (!absl::ConsumePrefix(&replica, kReplicas)) return;
  absl::MutexLock lock(&mu_);
  int64_t until = 0;
  if (!change.value || !absl::SimpleAtoi(*change.value, &until)) {
    replicas_.erase(std::string(replica));
    return;
  }
  replicas_[std::string(replica)] = absl::FromUnixSeconds(until);
}

std::optional<ConnectionDirectory::Holder> ConnectionDirectory::HeldElsewhere(const std::string& cluster) const {
  absl::MutexLock lock(&mu_);
  auto it = connections_.find(cluster);
  if (it == connections_.end() || it->second.replica == replica_) return std::nullopt;
  auto alive = replicas_.find(it->second.replica);
  if (alive == replicas_.end() || alive->second < absl::Now()) return std::nullopt;
  return it->second;
}

int ConnectionDirectory::ForgetDeadReplicas(absl::Time now, absl::Duration after) {
  absl::StatusOr<std::map<std::string, state::Record>> replicas = store_->List(kReplicas);
  absl::StatusOr<std::map<std::string, state::Record>> connections = store_->List(kConnections);
  if (!replicas.ok() || !connections.ok()) return 0;
  // Recorded and not yet silent for `after`: their entries stay, even while a
  // replica's record is a little late (an etcd outage delays every beat).
  std::set<std::string> kept = {replica_};
  int forgotten = 0;
  for (const auto& [key, record] : *replicas) {
    std::string replica = key.substr(strlen(kReplicas));
    int64_t until = 0;
    if (replica == replica_ ||
        (absl::SimpleAtoi(record.value, &until) && now < absl::FromUnixSeconds(until) + after)) {
      kept.insert(replica);
      continue;
    }
    if (store_->CompareAndSetAndWait(key, std::nullopt, record.revision).ok()) {
      forgotten++;
      LogInfo("replica_forgotten", {{"replica", replica}});
    }
  }
  for (const auto& [key, record] : *connections) {
    std::vector<std::string> fields = absl::StrSplit(record.value, absl::MaxSplits('\t', 1));
    if (kept.count(fields[0])) continue;
    if (store_->CompareAndSetAndWait(key, std::nullopt, record.revision).ok()) forgotten++;
  }
  return forgotten;
}

}  // namespace relay::mgmt
