#include "mgmt/root_rotation.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace relay::mgmt {
namespace {

constexpr RootRotationPhase kPhases[] = {RootRotationPhase::kAdd, RootRotationPhase::kSwitch,
                                         RootRotationPhase::kRetire, RootRotationPhase::kDone};

// Milliseconds: the switch gate compares issuance times with the switch's.
int64_t UnixMillisOrZero(absl::Time time) { return time == absl::InfinitePast() ? 0 : absl::ToUnixMillis(time); }
absl::Time TimeOrPast(int64_t unix_ms) { return unix_ms == 0 ? absl::InfinitePast() : absl::FromUnixMillis(unix_ms); }

void Count(GateProgress& progress, const ClusterRecord& record, bool ready) {
  progress.clusters++;
  if (ready) {
    progress.ready++;
  } else if (progress.waiting.size() < 50) {
    progress.waiting.push_back(record.name);
  }
}

}  // namespace

absl::string_view PhaseName(RootRotationPhase phase) {
  switch (phase) {
    case RootRotationPhase::kAdd: return "add";
    case RootRotationPhase::kSwitch: return "switch";
    case RootRotationPhase::kRetire: return "retire";
    case RootRotationPhase::kDone: return "done";
  }
  return "done";
}

std::string FormatRootRotation(const RootRotation& rotation) {
  return absl::StrCat("phase=", PhaseName(rotation.phase), " previous=", rotation.previous_serial,
                      " next=", rotation.next_serial, " started_ms=", UnixMillisOrZero(rotation.started_at),
                      " switched_ms=", UnixMillisOrZero(rotation.switched_at),
                      " finished_ms=", UnixMillisOrZero(rotation.finished_at));
}

absl::StatusOr<RootRotation> ParseRootRotation(absl::string_view text) {
  RootRotation rotation;
  bool phase_read = false;
  for (absl::string_view field : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    int64_t unix = 0;
    bool ok = true;
    if (absl::ConsumePrefix(&field, "phase=")) {
      ok = false;
      for (RootRotationPhase phase : kPhases) {
        if (field == PhaseName(phase)) rotation.phase = phase, ok = phase_read = true;
      }
    } else if (absl::ConsumePrefix(&field, "previous=")) {
      rotation.previous_serial = std::string(field);
    } else if (absl::ConsumePrefix(&field, "next=")) {
      rotation.next_serial = std::string(field);
    } else if (absl::ConsumePrefix(&field, "started_ms=")) {
      ok = absl::SimpleAtoi(field, &unix), rotation.started_at = TimeOrPast(unix);
    } else if (absl::ConsumePrefix(&field, "switched_ms=")) {
      ok = absl::SimpleAtoi(field, &unix), rotation.switched_at = TimeOrPast(unix);
    } else if (absl::ConsumePrefix(&field, "finished_ms=")) {
      ok = absl::SimpleAtoi(field, &unix), rotation.finished_at = TimeOrPast(unix);
    }  // unknown fields: written by a newer server, kept out of the way
    if (!ok) {
      return absl::DataLossError(absl::StrCat("state record ", kRootRotationKey, " holds an unreadable field \"",
                                              field, "\": restore it from a backup, or delete it to end the rotation"));
    }
  }
  if (!phase_read || rotation.next_serial.empty()) {
    return absl::DataLossError(absl::StrCat("state record ", kRootRotationKey,
                                            " has no phase or no new root: restore it from a backup, or delete it "
                                            "to end the rotation"));
  }
  return rotation;
}

GateProgress BundleGate(const std::vector<ClusterRecord>& records, const std::string& digest) {
  GateProgress progress;
  for (const ClusterRecord& record : records) {
    if (!record.deregistered) Count(progress, record, record.trust_bundle == digest);
  }
  return progress;
}

GateProgress SwitchGate(const std::vector<ClusterRecord>& records, absl::Time switched_at,
                        absl::Duration client_lifetime, absl::Time now) {
  GateProgress progress;
  const bool all_expired = switched_at != absl::InfinitePast() && now >= switched_at + client_lifetime;
  for (const ClusterRecord& record : records) {
    if (record.deregistered) continue;
    Count(progress, record,
          all_expired || (switched_at != absl::InfinitePast() && record.issued_at > switched_at));
  }
  return progress;
}

}  // namespace relay::mgmt
