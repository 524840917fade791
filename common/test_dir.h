#ifndef RELAY_COMMON_TEST_DIR_H_
#define RELAY_COMMON_TEST_DIR_H_

// Temporary directories for tests: under TEST_TMPDIR, which Bazel gives each test and
// cleans after it (/tmp outside Bazel); and whole files as bytes, to damage them the
// way a disk or a person would.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace relay::testing {

// A new, empty directory named after `prefix`; "" when it cannot be made.
inline std::string MakeTestDir(absl::string_view prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix, ".XXXXXX");
  const char* made = mkdtemp(tmpl.data());
  return made != nullptr ? made : "";
}

// The file's bytes; "" when it cannot be read.
inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Replaces the file with `content`, making its directory when needed.
inline void WriteFileBytes(const std::string& path, const std::string& content) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

}  // namespace relay::testing

#endif  // RELAY_COMMON_TEST_DIR_H_
