#ifndef RELAY_TOOLS_BENCH_BENCH_UTIL_H_
#define RELAY_TOOLS_BENCH_BENCH_UTIL_H_

// Small helpers the benchmarks share.

#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace relay::bench {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs the calling thread (and threads it starts later) on `cpus` only; false when the
// machine has none of them.
inline bool PinTo(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}
inline bool PinTo(int cpu) { return PinTo(std::vector<int>{cpu}); }

// utime + stime of a process (0: this one), in seconds.
inline double CpuSeconds(pid_t pid) {
  std::string stat = ReadFile(pid == 0 ? std::string("/proc/self/stat") : absl::StrCat("/proc/", pid, "/stat"));
  size_t end = stat.rfind(')');
  if (end == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(end + 2), ' ');
  double ticks = 0, value = 0;
  if (fields.size() > 12 && absl::SimpleAtod(fields[11], &value)) ticks += value;
  if (fields.size() > 12 && absl::SimpleAtod(fields[12], &value)) ticks += value;
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace relay::bench

#endif  // RELAY_TOOLS_BENCH_BENCH_UTIL_H_
