#ifndef RELAY_COMMON_STATUS_MACROS_H_
#define RELAY_COMMON_STATUS_MACROS_H_

// Abseil 20220623 ships neither macro; these follow the shape of the later absl ones.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RELAY_STATUS_CONCAT_INNER_(a, b) a##b
#define RELAY_STATUS_CONCAT_(a, b) RELAY_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status relay_status_ = (expr);          \
    if (!relay_status_.ok()) return relay_status_;  \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares or assigns `x` from an absl::StatusOr,
// returning its status from the enclosing function when it holds an error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  RELAY_ASSIGN_OR_RETURN_IMPL_(RELAY_STATUS_CONCAT_(relay_statusor_, __LINE__), lhs, expr)

#define RELAY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // RELAY_COMMON_STATUS_MACROS_H_
