#include "tokens/bootstrap_tokens.h"

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

// Keeps only live records.
secrets::SecretData Pruned(const secrets::SecretData& data, absl::Time now) {
  secrets::SecretData live;
  for (const auto& [hash, value] : data) {
    absl::StatusOr<BootstrapTokenRecord> record = Decode(hash, value);
    if (record.ok() && record->expires > now && record->uses_left > 0) live.emplace(hash, value);
  }
  return live;
}

}  // namespace

absl::StatusOr<secrets::SecretData> BootstrapTokens::Load() {
  absl::StatusOr<secrets::SecretData> data = store_->Get(ns_, kBootstrapTokenSecret);
  if (absl::IsNotFound(data.status())) return secrets::SecretData{};
  return data;
}

absl::StatusOr<std::string> BootstrapTokens::Create(absl::string_view cluster, absl::Duration ttl,
                                                    int uses, absl::Time now) {
  RETURN_IF_ERROR(ValidateClusterName(cluster));
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("bootstrap token TTL must be positive, e.g. 1h");
  }
  if (uses < 1) return absl::InvalidArgumentError("bootstrap token must allow at least one use");
  ASSIGN_OR_RETURN(std::string random, GenerateToken());
  std::string token = absl::StrCat(kBootstrapTokenPrefix, random);
  BootstrapTokenRecord record{TokenHash(token), std::string(cluster), now + ttl, uses};
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(secrets::SecretData data, Load());
  data = Pruned(data, now);
  if (data.size() >= secrets::kMaxSecretKeys) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "there are already ", data.size(), " live bootstrap tokens: let some expire or use them"));
  }
  data[record.hash] = Encode(record);
  RETURN_IF_ERROR(store_->Put(ns_, kBootstrapTokenSecret, data));
  return token;
}

absl::Status BootstrapTokens::Redeem(absl::string_view token, absl::string_view cluster,
                                     absl::Time now, absl::FunctionRef<absl::Status()> issue) {
  if (!absl::StartsWith(token, kBootstrapTokenPrefix) || token.size() > kMaxTokenBytes) {
    return InvalidToken();
  }
  std::string hash = TokenHash(token);
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(secrets::SecretData data, Load());
  auto it = data.find(hash);
  if (it == data.end()) return InvalidToken();
  ASSIGN_OR_RETURN(BootstrapTokenRecord record, Decode(hash, it->second));
  if (record.expires <= now || record.uses_left <= 0) return InvalidToken();
  if (record.cluster != cluster) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this bootstrap token was made for cluster \"", record.cluster, "\", not \"", cluster,
        "\": use the agent's own token"));
  }
  // Consume first, then issue, and give the use back if issuance fails: a crash in
  // between burns the token rather than letting it be used twice.
  secrets::SecretData consumed = Pruned(data, now);
  record.uses_left--;
  if (record.uses_left > 0) {
    consumed[hash] = Encode(record);
  } else {
    consumed.erase(hash);
  }
  RETURN_IF_ERROR(store_->Put(ns_, kBootstrapTokenSecret, consumed));
  absl::Status issued = issue();
  if (!issued.ok()) {
    absl::Status restored = store_->Put(ns_, kBootstrapTokenSecret, data);
    if (!restored.ok()) {
      return absl::Status(issued.code(), absl::StrCat(issued.message(),
                                                      "; the bootstrap token could not be "
                                                      "restored and is used up: ",
                                                      restored.message()));
    }
  }
  return issued;
}

absl::StatusOr<std::vector<BootstrapTokenRecord>> BootstrapTokens::List(absl::Time now) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(secrets::SecretData data, Load());
  std::vector<BootstrapTokenRecord> records;
  for (const auto& [hash, value] : Pruned(data, now)) {
    ASSIGN_OR_RETURN(BootstrapTokenRecord record, Decode(hash, value));
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace relay::tokens
