#include "fuzz/fuzz_support.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

namespace relay::fuzz {
namespace {

int RemoveEntry(const char* path, const struct stat*, int, struct FTW* ftw) {
  if (ftw->level > 0) remove(path);
  return 0;
}

void RemoveTree(const std::string& dir) { nftw(dir.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS); }

}  // namespace

const std::string& ScratchDir() {
  static const std::string* const dir = [] {
    struct stat info;
    const char* base = stat("/dev/shm", &info) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                       : getenv("TEST_TMPDIR") != nullptr                             ? getenv("TEST_TMPDIR")
                                                                                      : "/tmp";
    std::string pattern = std::string(base) + "/relay-fuzz.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    auto* made = new std::string(pattern);
    atexit([] {
      RemoveTree(*dir);
      rmdir(dir->c_str());
    });
    return made;
  }();
  return *dir;
}

void ClearDir(const std::string& dir) { RemoveTree(dir); }

std::string TakeOpenSslErrorFields() {
  std::string fields;
  const char* data = nullptr;
  int flags = 0;
  while (ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags) != 0) {
    if ((flags & ERR_TXT_STRING) != 0) fields.append(data).append("; ");
  }
  return fields;
}

}  // namespace relay::fuzz
