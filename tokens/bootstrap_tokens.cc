#include "tokens/bootstrap_tokens.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "tokens/identity_token.h"

namespace relay::tokens {
namespace {

// Record value: "cluster=<name>;expires=<unix seconds>;uses=<n>".
std::string Encode(const BootstrapTokenRecord& record) {
  return absl::StrCat("cluster=", record.cluster, ";expires=", absl::ToUnixSeconds(record.expires),
                      ";uses=", record.uses_left);
}

absl::StatusOr<BootstrapTokenRecord> Decode(absl::string_view hash, absl::string_view value) {
  BootstrapTokenRecord record;
  record.hash = std::string(hash);
  int64_t expires = 0;
  bool have_cluster = false, have_expires = false, have_uses = false;
  for (absl::string_view field : absl::StrSplit(value, ';')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    if (kv.first == "cluster") {
      record.cluster = std::string(kv.second);
      have_cluster = IsDnsLabel(record.cluster);
    } else if (kv.first == "expires") {
      have_expires = absl::SimpleAtoi(kv.second, &expires);
    } else if (kv.first == "uses") {
      have_uses = absl::SimpleAtoi(kv.second, &record.uses_left);
    }
  }
  if (!have_cluster || !have_expires || !have_uses) {
    return absl::DataLossError(absl::StrCat("bootstrap token record ", hash.substr(0, 12),
                                            "... is malformed"));
  }
  record.expires = absl::FromUnixSeconds(expires);
  return record;
}

absl::Status InvalidToken() {
  return absl::UnauthenticatedError(
      "bootstrap token is not valid (unknown, expired or already used): create a new one with "
      "relayctl register --bootstrap_token_ttl");
}

// Tries a change of one token's record a few times: another server may be changing
// it at the same moment (its write wins; we read again).
constexpr int kAttempts = 20;

std::string KeyOf(absl::string_view hash) { return absl::StrCat(kBootstrapTokenKeyPrefix, hash); }

bool Live(const BootstrapTokenRecord& record, absl::Time now) { return record.expires > now && record.uses_left > 0; }

}  // namespace

absl::Status BootstrapTokens::MigrateOnce() {
  absl::MutexLock lock(&migrate_mu_);
  if (migrated_) return absl::OkStatus();
  absl::StatusOr<secrets::SecretData> old = state_->secrets().Get(ns_, kBootstrapTokenSecret);
  if (absl::IsNotFound(old.status())) {
    migrated_ = true;
    return absl::OkStatus();
  }
  if (!old.ok()) return old.status();
  for (const auto& [hash, value] : *old) {
    if (!Decode(hash, value).ok()) continue;  // nothing that could be redeemed
    absl::StatusOr<int64_t> moved = state_->CompareAndSetAndWait(KeyOf(hash), value, 0);
    if (!moved.ok() && !absl::IsAlreadyExists(moved.status())) return moved.status();
  }
  absl::Status deleted = state_->secrets().Delete(ns_, kBootstrapTokenSecret);
  if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
  migrated_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> BootstrapTokens::Create(absl::string_view cluster, absl::Duration ttl,
                                                    int uses, absl::Time now) {
  RETURN_IF_ERROR(ValidateClusterName(cluster));
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("bootstrap token TTL must be positive, e.g. 1h");
  }
  if (uses < 1) return absl::InvalidArgumentError("bootstrap token must allow at least one use");
  RETURN_IF_ERROR(MigrateOnce());
  // Drop what can no longer be redeemed, then bound what is left.
  ASSIGN_OR_RETURN(auto records, state_->List(kBootstrapTokenKeyPrefix));
  size_t live = 0;
  for (const auto& [key, stored] : records) {
    absl::StatusOr<BootstrapTokenRecord> record = Decode(key.substr(strlen(kBootstrapTokenKeyPrefix)), stored.value);
    if (record.ok() && Live(*record, now)) {
      live++;
    } else {
      (void)state_->CompareAndSetAndWait(key, std::nullopt, stored.revision);  // a racing server may have done it
    }
  }
  if (live >= secrets::kMaxSecretKeys) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "there are already ", live, " live bootstrap tokens: let some expire or use them"));
  }
  ASSIGN_OR_RETURN(std::string random, GenerateToken());
  std::string token = absl::StrCat(kBootstrapTokenPrefix, random);
  BootstrapTokenRecord record{TokenHash(token), std::string(cluster), now + ttl, uses};
  RETURN_IF_ERROR(state_->CompareAndSetAndWait(KeyOf(record.hash), Encode(record), 0).status());
  return token;
}

absl::Status BootstrapTokens::Redeem(absl::string_view token, absl::string_view cluster,
                                     absl::Time now, absl::FunctionRef<absl::Status()> issue) {
  if (!absl::StartsWith(token, kBootstrapTokenPrefix) || token.size() > kMaxTokenBytes) {
    return InvalidToken();
  }
  RETURN_IF_ERROR(MigrateOnce());
  const std::string key = KeyOf(TokenHash(token));
  // Consume first, then issue, and give the use back if issuance fails: a crash in
  // between burns the token rather than letting it be used twice.
  BootstrapTokenRecord record;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<state::Record> stored = state_->Get(key);
    if (absl::IsNotFound(stored.status())) return InvalidToken();
    if (!stored.ok()) return stored.status();
    ASSIGN_OR_RETURN(record, Decode(TokenHash(token), stored->value));
    if (!Live(record, now)) return InvalidToken();
    if (record.cluster != cluster) {
      return absl::PermissionDeniedError(absl::StrCat(
          "this bootstrap token was made for cluster \"", record.cluster, "\", not \"", cluster,
          "\": use the agent's own token"));
    }
    BootstrapTokenRecord consumed = record;
    consumed.uses_left--;
    absl::StatusOr<int64_t> written = state_->CompareAndSetAndWait(
        key, consumed.uses_left > 0 ? std::optional<std::string>(Encode(consumed)) : std::nullopt, stored->revision);
    if (written.ok()) break;
    if (!absl::IsAborted(written.status()) && !absl::IsNotFound(written.status())) return written.status();
    if (attempt + 1 == kAttempts) return absl::UnavailableError("the bootstrap token is being used elsewhere: try again");
  }
  absl::Status issued = issue();
  if (issued.ok()) return issued;
  // Give the use back.
  absl::Status restored;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<state::Record> stored = state_->Get(key);
    BootstrapTokenRecord back = record;
    int64_t revision = 0;
    if (stored.ok()) {
      absl::StatusOr<BootstrapTokenRecord> now_stored = Decode(TokenHash(token), stored->value);
      if (now_stored.ok()) back.uses_left = now_stored->uses_left + 1;
      revision = stored->revision;
    } else if (!absl::IsNotFound(stored.status())) {
      restored = stored.status();
      break;
    }
    absl::StatusOr<int64_t> written = state_->CompareAndSetAndWait(key, Encode(back), revision);
    restored = written.status();
    if (written.ok() || (!absl::IsAborted(written.status()) && !absl::IsAlreadyExists(written.status()))) break;
  }
  if (!restored.ok()) {
    return absl::Status(issued.code(), absl::StrCat(issued.message(),
                                                    "; the bootstrap token could not be restored and is used up: ",
                                                    restored.message()));
  }
  return issued;
}

absl::StatusOr<std::string> BootstrapTokens::Revoke(absl::string_view hash_prefix) {
  if (hash_prefix.size() < 8) {
    return absl::InvalidArgumentError("give at least 8 hex digits of the token's hash (relayctl tokens list shows them)");
  }
  RETURN_IF_ERROR(MigrateOnce());
  ASSIGN_OR_RETURN(auto records, state_->List(kBootstrapTokenKeyPrefix));
  std::vector<std::pair<std::string, state::Record>> matches;
  for (const auto& [key, stored] : records) {
    if (absl::StartsWith(absl::string_view(key).substr(strlen(kBootstrapTokenKeyPrefix)), hash_prefix)) {
      matches.emplace_back(key, stored);
    }
  }
  if (matches.empty()) return absl::NotFoundError(absl::StrCat("no bootstrap token's hash starts with ", hash_prefix));
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(matches.size(), " bootstrap tokens' hashes start with ", hash_prefix,
                                                   ": give more digits"));
  }
  const auto& [key, stored] = matches[0];
  absl::StatusOr<BootstrapTokenRecord> record = Decode(key.substr(strlen(kBootstrapTokenKeyPrefix)), stored.value);
  RETURN_IF_ERROR(state_->CompareAndSetAndWait(key, std::nullopt, stored.revision).status());
  return record.ok() ? record->cluster : std::string();
}

absl::StatusOr<std::vector<BootstrapTokenRecord>> BootstrapTokens::List(absl::Time now) {
  RETURN_IF_ERROR(MigrateOnce());
  ASSIGN_OR_RETURN(auto records, state_->List(kBootstrapTokenKeyPrefix));
  std::vector<BootstrapTokenRecord> live;
  for (const auto& [key, stored] : records) {
    absl::StatusOr<BootstrapTokenRecord> record = Decode(key.substr(strlen(kBootstrapTokenKeyPrefix)), stored.value);
    if (record.ok() && Live(*record, now)) live.push_back(*std::move(record));
  }
  return live;
}

}  // namespace relay::tokens
