#ifndef RELAY_E2E_HARNESS_H_
#define RELAY_E2E_HARNESS_H_

// End-to-end test helpers: real binaries as child processes, temporary directories,
// readiness files (never fixed sleeps), and commands such as `openssl` and `relayctl`.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/process_testing.h"

namespace relay::e2e {

// A fresh directory under /tmp (Unix socket paths must stay short), removed at exit.
std::string MakeTempDir(const std::string& prefix);

std::string ReadFileOrEmpty(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);

// Polls `condition` every 20 ms until it holds or `timeout` passes.
using ::relay::testing::FreePort;
using ::relay::testing::Process;
using ::relay::testing::WaitFor;

// How many times `needle` occurs in `text` (events in a log).
int CountOccurrences(const std::string& text, const std::string& needle);

// How long a test waits for an event before it fails: generous, since only a broken
// relay takes this long and a working one is not slowed by it. Timing goals live in
// the benchmarks (tools/bench), never in tests.
inline constexpr absl::Duration kPatience = absl::Seconds(30);

// `key=value` lines of a ready file.
std::map<std::string, std::string> ReadKeyValues(const std::string& path);

// Paths of the binaries under test (runfiles).
std::string ServerBinary();
std::string AgentBinary();
std::string RelayctlBinary();
std::string RotatorBinary();

// GET http://127.0.0.1:<port><path>: the status code (0 when unreachable) and body.
std::pair<int, std::string> HttpGet(int port, const std::string& path);

// The value of the first sample named `series` (name with labels, e.g.
// relay_agent_connected or foo{a="b"}) in Prometheus text, or -1.
double MetricValue(const std::string& metrics, const std::string& series);

// A child process whose stdout and stderr go to `log_path`. Stopped (SIGTERM, then
// SIGKILL after 5 s) when destroyed.
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};


// Raises this process's open-file soft limit to its hard limit; returns it.
uint64_t RaiseOpenFileLimit();

// Runs a command to completion (bounded by `timeout`).
CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout = absl::Seconds(30));

// A management server on 127.0.0.1 with free ports and its own secret store.
class ServerUnderTest {
 public:
  // `extra_flags` are appended (e.g. --values=..., --client_cert_ttl=30s).
  explicit ServerUnderTest(std::string secrets_dir, std::vector<std::string> extra_flags = {},
                           int fixed_grpc_port = 0);
  ~ServerUnderTest();

  // Starts and waits for readiness; false (with the log in `error`) if it did not come up.
  bool Start(std::string* error);
  // Starts it under `ulimit -n limit` (soft and hard): for descriptor exhaustion.
  void SetOpenFileLimit(int limit) { open_file_limit_ = limit; }
  void Stop();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  int health_port() const { return health_port_; }
  std::string address() const;
  const std::string& secrets_dir() const { return secrets_dir_; }
  std::string admin_socket() const { return secrets_dir_ + "/admin.sock"; }
  std::string Log() const { return process_ ? process_->Log() : ""; }
  std::string Metrics() const;
  Process* process() { return process_.get(); }

  // relayctl against this server.
  CommandResult Relayctl(std::vector<std::string> args) const;

 private:
  std::string secrets_dir_;
  std::vector<std::string> extra_flags_;
  int fixed_grpc_port_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int health_port_ = 0;
  int open_file_limit_ = 0;
  int start_count_ = 0;
  std::unique_ptr<Process> process_;
};

// An agent for one cluster with its own secret store.
class AgentUnderTest {
 public:
  AgentUnderTest(std::string cluster, std::string secrets_dir, std::string server_address,
                 std::vector<std::string> extra_flags = {});
  ~AgentUnderTest();

  void Start();
  // Waits for the relay stream to come up (the ready file).
  bool WaitConnected(absl::Duration timeout);
  void Stop();

  const std::string& secrets_dir() const { return secrets_dir_; }
  std::string output_dir() const { return secrets_dir_ + "/output"; }
  std::string Log() const { return process_ ? process_->Log() : ""; }
  Process* process() { return process_.get(); }
  // The key of a secret in the agent's store (kubelet layout), or "".
  std::string SecretKey(const std::string& secret, const std::string& key) const;
  // Its /metrics (it runs with --metrics_address=127.0.0.1:0).
  std::string Metrics() const;

 private:
  std::string cluster_;
  std::string secrets_dir_;
  std::string server_address_;
  std::vector<std::string> extra_flags_;
  int start_count_ = 0;
  std::unique_ptr<Process> process_;
};

// The rotator sidecar for one cluster, sharing the agent's store.
class RotatorUnderTest {
 public:
  RotatorUnderTest(std::string cluster, std::string secrets_dir, std::string server_address,
                   std::vector<std::string> extra_flags = {});
  ~RotatorUnderTest();
  bool Start(std::string* error);
  void Stop();
  std::string Log() const { return process_ ? process_->Log() : ""; }
  std::string Metrics() const;
  std::pair<int, std::string> Health() const;
  Process* process() { return process_.get(); }

 private:
  std::string cluster_;
  std::string secrets_dir_;
  std::string server_address_;
  std::vector<std::string> extra_flags_;
  int start_count_ = 0;
  int metrics_port_ = 0;
  int health_port_ = 0;
  std::unique_ptr<Process> process_;
};

// Gives <dir>/<cluster> the root and the token (relayctl register), starts an agent on
// it and waits for its relay stream; a failure is a test failure (gtest EXPECT).
std::unique_ptr<AgentUnderTest> StartConnectedAgent(const ServerUnderTest& server, const std::string& dir,
                                                    const std::string& cluster,
                                                    std::vector<std::string> flags = {});

// `rotator --once --force` on a cluster's store, against `server_address`.
CommandResult ForceRotation(const std::string& cluster, const std::string& secrets_dir,
                            const std::string& server_address);

// Reads `key` of `secret` in namespace gloo-mesh of a directory store.
std::string SecretFile(const std::string& secrets_dir, const std::string& secret, const std::string& key);
// Writes a secret as a plain directory (as a person would with mkdir and cp).
void WritePlainSecret(const std::string& secrets_dir, const std::string& secret,
                      const std::map<std::string, std::string>& data);

}  // namespace relay::e2e

#endif  // RELAY_E2E_HARNESS_H_
