#ifndef RELAY_MGMT_ROOT_ROTATION_H_
#define RELAY_MGMT_ROOT_ROTATION_H_
// The root rotation's persisted state (state record "ca/root-rotation") and the gates
// between its phases, judged from what every registered cluster has confirmed:
//
//   add     root B is trusted beside A: the bundle {A, B} is pushed; gate: every
//           registered cluster has stored it (acked its digest).
//   switch  the intermediate, the server certificate and new leaves are under B, and B
//           cross-certified by A rides in every chain; gate: every registered cluster's
//           latest certificate was issued after the switch, or one client lifetime has
//           passed (every earlier one has expired).
//   retire  the bundle without A is pushed; gate: every registered cluster has stored it.
//   done    A's certificate is kept for audit (the root secret's retired.crt).
//
// One driver at a time: the record moves by compare-and-set, and only the elected
// replica (or an operator's request) moves it. Each phase's effects are idempotent, so a
// driver that died mid-phase is resumed by the next one.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mgmt/cluster_registry.h"

namespace relay::mgmt {

inline constexpr char kRootRotationKey[] = "ca/root-rotation";

enum class RootRotationPhase { kAdd, kSwitch, kRetire, kDone };
absl::string_view PhaseName(RootRotationPhase phase);

struct RootRotation {
  RootRotationPhase phase = RootRotationPhase::kDone;
  std::string previous_serial;  // root A, the one issuing when the rotation started
  std::string next_serial;      // root B
  absl::Time started_at = absl::InfinitePast();
  absl::Time switched_at = absl::InfinitePast();  // once the intermediate is under B
  absl::Time finished_at = absl::InfinitePast();
  int64_t revision = 0;  // of the record, for the next compare-and-set
};

// "phase=switch previous=<hex> next=<hex> started_ms=<unix ms> switched_ms=... finished_ms=..."
std::string FormatRootRotation(const RootRotation& rotation);
// DATA_LOSS naming the record when it cannot be read.
absl::StatusOr<RootRotation> ParseRootRotation(absl::string_view text);

// How far the registered (not deregistered) clusters are with a gate.
struct GateProgress {
  int clusters = 0;
  int ready = 0;
  std::vector<std::string> waiting;  // the first 50 not ready, by name
  bool passed() const { return ready == clusters; }
};

// add and retire: clusters whose stored trust bundle has `digest`.
GateProgress BundleGate(const std::vector<ClusterRecord>& records, const std::string& digest);
// switch: clusters whose latest certificate was issued after `switched_at` (so under the
// new root); once `switched_at + client_lifetime` has passed, every cluster counts, since
// any certificate issued before the switch has expired.
GateProgress SwitchGate(const std::vector<ClusterRecord>& records, absl::Time switched_at,
                        absl::Duration client_lifetime, absl::Time now);

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_ROOT_ROTATION_H_
