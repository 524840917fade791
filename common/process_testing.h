#ifndef RELAY_COMMON_PROCESS_TESTING_H_
#define RELAY_COMMON_PROCESS_TESTING_H_

// For tests that run real processes (relay's binaries, etcd): spawn with output to a
// log file, stop (SIGTERM, then SIGKILL), wait with a bound; free loopback ports; and
// waiting for a condition with a deadline.

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace relay::testing {

// Polls `condition` until it holds or `timeout` passes; its last answer.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range
// so that no connection's local port can take it while a server restarts. No other call,
// in this process or another test's, returns it while this process lives.
int FreePort();

// A child process (searched on PATH), stdin from /dev/null, stdout and stderr appended to
// `log_path`. Stopped when destroyed.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  // Waits for the process to exit; returns its exit status, or -1 on timeout.
  int Wait(absl::Duration timeout);
  void Signal(int signal_number);
  // SIGTERM, then SIGKILL after 5 s.
  void Stop();
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

}  // namespace relay::testing

#endif  // RELAY_COMMON_PROCESS_TESTING_H_
