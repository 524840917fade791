#ifndef RELAY_TOOLS_BENCH_BENCH_UTIL_H_
#define RELAY_TOOLS_BENCH_BENCH_UTIL_H_

// Small helpers the benchmarks share.

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern "C" char** environ;

namespace relay::bench {

// Starts `argv` (looked up in PATH) with stdout and stderr appended to `log`; the pid,
// or -1.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// "127.0.0.1:<port>" from a server's --ready_file contents ("grpc_port=<port>\n..."),
// or "" when it is empty.
inline std::string AddressFromReadyFile(const std::string& ready) {
  if (ready.empty()) return "";
  size_t equals = ready.find('=');
  return "127.0.0.1:" + ready.substr(equals + 1, ready.find('\n') - equals - 1);
}

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
