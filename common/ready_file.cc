#include "common/ready_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace relay {

absl::Status WriteReadyFile(const std::string& path, const std::vector<std::pair<std::string, std::string>>& entries) {
  if (path.empty()) return absl::OkStatus();
  std::string content;
  for (const auto& [key, value] : entries) absl::StrAppend(&content, key, "=", value, "\n");
  std::string temp = path + ".tmp";
  std::FILE* file = std::fopen(temp.c_str(), "w");
  if (file == nullptr) {
    return absl::InternalError(absl::StrCat("cannot write the ready file ", temp, ": ", std::strerror(errno)));
  }
  bool written = std::fwrite(content.data(), 1, content.size(), file) == content.size();
  written = std::fclose(file) == 0 && written;
  if (!written || std::rename(temp.c_str(), path.c_str()) != 0) {
    int error = errno;
    std::remove(temp.c_str());
    return absl::InternalError(absl::StrCat("cannot write the ready file ", path, ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace relay
