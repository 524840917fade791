#ifndef RELAY_FUZZ_FUZZ_SUPPORT_H_
#define RELAY_FUZZ_FUZZ_SUPPORT_H_

// What the fuzz targets share: a property check that stops the fuzzer with a message
// (libFuzzer keeps the input that caused it), and a scratch directory for targets whose
// parser reads files.

#include <cstdio>
#include <cstdlib>
#include <string>

#include "pki/ssl_types.h"

namespace relay::fuzz {

// A property the code under test must keep for every input; abort() is what libFuzzer
// (and the replay driver) report as a crash.
#define FUZZ_CHECK(condition, what)                                                 \
  do {                                                                              \
    if (!(condition)) {                                                             \
      std::fprintf(stderr, "%s:%d: property broken: %s (%s)\n", __FILE__, __LINE__, \
                   what, #condition);                                               \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// A fresh directory for this process, on tmpfs when there is one (targets that write
// files call fsync, which costs nothing there), removed at exit.
const std::string& ScratchDir();

// Removes everything under `dir`, leaving `dir` itself.
void ClearDir(const std::string& dir);

// `object` as DER, by `i2d` (i2d_X509_NAME, i2d_ASN1_TIME, ...); "" when it cannot be
// encoded.
template <typename I2d, typename T>
std::string Der(I2d i2d, const T* object) {
  std::string out;
  pki::EncodeDer(i2d, object, &out);
  return out;
}

// The "Field=..., Type=..." notes OpenSSL's ASN.1 decoder left on its error queue, which
// name each structure a failed decode was in; empties the queue.
std::string TakeOpenSslErrorFields();

}  // namespace relay::fuzz

#endif  // RELAY_FUZZ_FUZZ_SUPPORT_H_
