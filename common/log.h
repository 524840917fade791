#ifndef RELAY_COMMON_LOG_H_
#define RELAY_COMMON_LOG_H_

// One line per event on stderr, logfmt style:
//   ts=2026-11-27T10:00:00.123Z level=info event=cluster_registered cluster=east serial=4F...
// Values with spaces or quotes are quoted; control and non-ASCII bytes are escaped.
// Never pass secrets (keys, tokens) as fields.

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace relay {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error"; false for anything else.
bool ParseLogLevel(absl::string_view name, LogLevel* level);
void SetLogLevel(LogLevel level);

using LogFields = std::initializer_list<std::pair<absl::string_view, std::string>>;

void Log(LogLevel level, absl::string_view event, LogFields fields = {});

// The line Log() writes, newline included. Values are quoted when they hold spaces,
// quotes or '=', and every byte outside printable ASCII is escaped (\n, \r, \t, \xNN),
// so a value from a request can never forge or break a line.
std::string FormatLogLine(LogLevel level, absl::string_view event, LogFields fields = {});

inline void LogInfo(absl::string_view event, LogFields fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarning(absl::string_view event, LogFields fields = {}) {
  Log(LogLevel::kWarning, event, fields);
}
inline void LogError(absl::string_view event, LogFields fields = {}) {
  Log(LogLevel::kError, event, fields);
}
inline void LogDebug(absl::string_view event, LogFields fields = {}) {
  Log(LogLevel::kDebug, event, fields);
}

}  // namespace relay

#endif  // RELAY_COMMON_LOG_H_
