#ifndef RELAY_COMMON_TEST_DIR_H_
#define RELAY_COMMON_TEST_DIR_H_

// Temporary directories for tests: under TEST_TMPDIR, which Bazel gives each test and
// cleans after it (/tmp outside Bazel).

#include <cstdlib>
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

}  // namespace relay::testing

#endif  // RELAY_COMMON_TEST_DIR_H_
