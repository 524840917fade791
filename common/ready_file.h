#ifndef RELAY_COMMON_READY_FILE_H_
#define RELAY_COMMON_READY_FILE_H_

// The --ready_file every long-running binary writes once it serves: `key=value` lines
// (ports, for tests and scripts that started it on port 0), written to a temporary file
// and renamed, so a reader never sees half of it.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace relay {

// Errors name the file and what failed. An empty path writes nothing.
absl::Status WriteReadyFile(const std::string& path, const std::vector<std::pair<std::string, std::string>>& entries);

}  // namespace relay

#endif  // RELAY_COMMON_READY_FILE_H_
