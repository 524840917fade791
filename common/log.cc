#include "common/log.h"

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace relay {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

// Values come from requests (cluster names, status messages, peers) before anyone is
// authenticated: every byte that is not printable ASCII is escaped, so a value can
// neither end the line (CR, LF) nor drive a terminal (ESC, C1 controls) nor hide text
// (NUL). Such values, and those with spaces, quotes or '=', are quoted.
void AppendValue(std::string* line, absl::string_view value) {
  bool plain = !value.empty();
  for (char c : value) {
    unsigned char byte = static_cast<unsigned char>(c);
    if (byte <= ' ' || byte >= 0x7f || c == '"' || c == '=' || c == '\\') plain = false;
  }
  if (plain) {
    line->append(value.data(), value.size());
    return;
  }
  line->push_back('"');
  for (char c : value) {
    unsigned char byte = static_cast<unsigned char>(c);
    switch (c) {
      case '\\': line->append("\\\\"); break;
      case '"': line->append("\\\""); break;
      case '\n': line->append("\\n"); break;
      case '\r': line->append("\\r"); break;
      case '\t': line->append("\\t"); break;
      default:
        if (byte < ' ' || byte >= 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          line->append("\\x");
          line->push_back(kHex[byte >> 4]);
          line->push_back(kHex[byte & 0xf]);
        } else {
          line->push_back(c);
        }
    }
  }
  line->push_back('"');
}

}  // namespace

bool ParseLogLevel(absl::string_view name, LogLevel* level) {
  for (LogLevel candidate :
       {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (name == LevelName(candidate)) {
      *level = candidate;
      return true;
    }
  }
  return false;
}

void SetLogLevel(LogLevel level) { min_level = static_cast<int>(level); }

std::string FormatLogLine(LogLevel level, absl::string_view event, LogFields fields) {
  std::string line = absl::StrCat(
      "ts=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " level=", LevelName(level), " event=", event);
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&line, " ", key, "=");
    AppendValue(&line, value);
  }
  line += "\n";
  return line;
}

void Log(LogLevel level, absl::string_view event, LogFields fields) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) return;
  std::string line = FormatLogLine(level, event, fields);
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines do not interleave
}

}  // namespace relay
