#ifndef RELAY_TOOLS_BENCH_BENCH_UTIL_H_
#define RELAY_TOOLS_BENCH_BENCH_UTIL_H_

// Small helpers the benchmarks share.

#include <sched.h>

#include <fstream>
#include <sstream>
#include <string>

namespace relay::bench {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs the calling thread (and threads it starts later) on `cpu` only.
inline void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

}  // namespace relay::bench

#endif  // RELAY_TOOLS_BENCH_BENCH_UTIL_H_
