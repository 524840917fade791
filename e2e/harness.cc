#include "e2e/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/test_dir.h"
#include "gtest/gtest.h"
#include "secrets/directory_store.h"
#include "httplib.h"

extern char** environ;

namespace relay::e2e {

namespace {
// Under TEST_TMPDIR (Bazel cleans it), else /tmp; removed when the test process exits.
// The server's admin socket there is longer than a Unix socket address takes: the
// server and relayctl reach it through its directory (common/unix_socket_path.h).
std::vector<std::string>* temp_dirs = nullptr;
void RemoveTempDirs() {
  for (const std::string& dir : *temp_dirs) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}
}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  if (temp_dirs == nullptr) {
    temp_dirs = new std::vector<std::string>();
    std::atexit(RemoveTempDirs);
  }
  std::string made = relay::testing::MakeTestDir("relay-e2e-" + prefix);
  if (!made.empty()) temp_dirs->push_back(made);
  return made;
}

std::string ReadFileOrEmpty(const std::string& path) { return relay::testing::ReadFileBytes(path); }

void WriteFile(const std::string& path, const std::string& content) { relay::testing::WriteFileBytes(path, content); }

int CountOccurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) count++;
  return count;
}

std::map<std::string, std::string> ReadKeyValues(const std::string& path) {
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    values[kv.first] = kv.second;
  }
  return values;
}

std::string ServerBinary() { return "mgmt/server"; }
std::string AgentBinary() { return "agent/agent"; }
std::string RelayctlBinary() { return "tools/relayctl"; }
std::string RotatorBinary() { return "rotator/rotator"; }

std::pair<int, std::string> HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  auto response = client.Get(path.c_str());
  if (!response) return {0, ""};
  return {response->status, response->body};
}

double MetricValue(const std::string& metrics, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return -1;
}

uint64_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout) {
  std::string dir = MakeTempDir("cmd");
  std::string log = dir + "/output";
  Process process(argv, log);
  CommandResult result;
  result.exit_code = process.Wait(timeout);
  if (result.exit_code == -1) process.Stop();
  result.output = ReadFileOrEmpty(log);
  return result;
}

ServerUnderTest::ServerUnderTest(std::string secrets_dir, std::vector<std::string> extra_flags,
                                 int fixed_grpc_port)
    : secrets_dir_(std::move(secrets_dir)),
      extra_flags_(std::move(extra_flags)),
      fixed_grpc_port_(fixed_grpc_port) {}

ServerUnderTest::~ServerUnderTest() { Stop(); }

bool ServerUnderTest::Start(std::string* error) {
  std::string ready = absl::StrCat(secrets_dir_, ".ready.", start_count_);
  std::string log = absl::StrCat(secrets_dir_, ".server.", start_count_++, ".log");
  std::remove(ready.c_str());  // another object may have started a server on this store
  // A restart keeps the port (agents know it). The first start takes one from FreePort,
  // below the ephemeral range: one the kernel hands out for :0 may become some
  // connection's local port while the server is down, and the restart then fails.
  int port = grpc_port_ != 0 ? grpc_port_ : fixed_grpc_port_ != 0 ? fixed_grpc_port_ : FreePort();
  std::vector<std::string> argv = {ServerBinary(),
                                   "--secrets_dir=" + secrets_dir_,
                                   absl::StrCat("--grpc_address=127.0.0.1:", port),
                                   "--metrics_address=127.0.0.1:0",
                                   "--health_address=127.0.0.1:0",
                                   "--ready_file=" + ready,
                                   "--heartbeat_interval=500ms"};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  if (open_file_limit_ > 0) {
    argv.insert(argv.begin(), {"/bin/sh", "-c", absl::StrCat("ulimit -n ", open_file_limit_, " && exec \"$0\" \"$@\"")});
  }
  process_ = std::make_unique<Process>(argv, log);
  bool up = WaitFor([&] { return !ReadFileOrEmpty(ready).empty() || !process_->Running(); },
                    absl::Seconds(30));
  std::map<std::string, std::string> ports = ReadKeyValues(ready);
  if (!up || ports.empty()) {
    if (error) *error = absl::StrCat("server did not become ready; log:\n", process_->Log());
    return false;
  }
  (void)absl::SimpleAtoi(ports["grpc_port"], &grpc_port_);
  (void)absl::SimpleAtoi(ports["metrics_port"], &metrics_port_);
  (void)absl::SimpleAtoi(ports["health_port"], &health_port_);
  return true;
}

void ServerUnderTest::Stop() {
  if (process_) process_->Stop();
}

std::string ServerUnderTest::address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

std::string ServerUnderTest::Metrics() const {
  httplib::Client client("127.0.0.1", metrics_port_);
  client.set_connection_timeout(2);
  auto response = client.Get("/metrics");
  return response ? response->body : "";
}

CommandResult ServerUnderTest::Relayctl(std::vector<std::string> args) const {
  std::vector<std::string> argv = {RelayctlBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--mgmt_secrets_dir=" + secrets_dir_);
  return RunCommand(argv);
}

AgentUnderTest::AgentUnderTest(std::string cluster, std::string secrets_dir,
                               std::string server_address, std::vector<std::string> extra_flags)
    : cluster_(std::move(cluster)),
      secrets_dir_(std::move(secrets_dir)),
      server_address_(std::move(server_address)),
      extra_flags_(std::move(extra_flags)) {}

AgentUnderTest::~AgentUnderTest() { Stop(); }

void AgentUnderTest::Start() {
  std::string log = absl::StrCat(secrets_dir_, ".agent.", start_count_, ".log");
  std::string ready = absl::StrCat(secrets_dir_, ".agent-ready.", start_count_++);
  std::vector<std::string> argv = {AgentBinary(), "--cluster=" + cluster_,
                                   "--secrets_dir=" + secrets_dir_,
                                   "--server_address=" + server_address_, "--ready_file=" + ready,
                                   "--max_backoff=1s", "--metrics_address=127.0.0.1:0"};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  process_ = std::make_unique<Process>(argv, log);
}

bool AgentUnderTest::WaitConnected(absl::Duration timeout) {
  std::string ready = absl::StrCat(secrets_dir_, ".agent-ready.", start_count_ - 1);
  return WaitFor([&] { return !ReadFileOrEmpty(ready).empty(); }, timeout);
}

void AgentUnderTest::Stop() {
  if (process_) process_->Stop();
}

std::string AgentUnderTest::SecretKey(const std::string& secret, const std::string& key) const {
  return SecretFile(secrets_dir_, secret, key);
}

std::string AgentUnderTest::Metrics() const {
  std::string ready = absl::StrCat(secrets_dir_, ".agent-ready.", start_count_ - 1);
  int port = 0;
  if (!absl::SimpleAtoi(ReadKeyValues(ready)["metrics_port"], &port) || port == 0) return "";
  return HttpGet(port, "/metrics").second;
}

RotatorUnderTest::RotatorUnderTest(std::string cluster, std::string secrets_dir,
                                   std::string server_address, std::vector<std::string> extra_flags)
    : cluster_(std::move(cluster)),
      secrets_dir_(std::move(secrets_dir)),
      server_address_(std::move(server_address)),
      extra_flags_(std::move(extra_flags)) {}

RotatorUnderTest::~RotatorUnderTest() { Stop(); }

bool RotatorUnderTest::Start(std::string* error) {
  std::string log = absl::StrCat(secrets_dir_, ".rotator.", start_count_, ".log");
  std::string ready = absl::StrCat(secrets_dir_, ".rotator-ready.", start_count_++);
  std::vector<std::string> argv = {RotatorBinary(), "--cluster=" + cluster_,
                                   "--secrets_dir=" + secrets_dir_,
                                   "--server_address=" + server_address_,
                                   "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0",
                                   "--ready_file=" + ready, "--retry_max=1s"};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  process_ = std::make_unique<Process>(argv, log);
  bool up = WaitFor([&] { return !ReadFileOrEmpty(ready).empty() || !process_->Running(); }, absl::Seconds(20));
  std::map<std::string, std::string> ports = ReadKeyValues(ready);
  if (!up || ports.empty()) {
    if (error) *error = absl::StrCat("rotator did not start; log:\n", process_->Log());
    return false;
  }
  (void)absl::SimpleAtoi(ports["metrics_port"], &metrics_port_);
  (void)absl::SimpleAtoi(ports["health_port"], &health_port_);
  return true;
}

void RotatorUnderTest::Stop() {
  if (process_) process_->Stop();
}

std::string RotatorUnderTest::Metrics() const { return HttpGet(metrics_port_, "/metrics").second; }

std::pair<int, std::string> RotatorUnderTest::Health() const { return HttpGet(health_port_, "/healthz"); }

std::unique_ptr<AgentUnderTest> StartConnectedAgent(const ServerUnderTest& server, const std::string& dir,
                                                    const std::string& cluster, std::vector<std::string> flags) {
  std::string store = dir + "/" + cluster;
  CommandResult registered = server.Relayctl({"register", "--cluster=" + cluster, "--secrets_dir=" + store});
  EXPECT_EQ(registered.exit_code, 0) << registered.output;
  auto agent = std::make_unique<AgentUnderTest>(cluster, store, server.address(), std::move(flags));
  agent->Start();
  EXPECT_TRUE(agent->WaitConnected(absl::Seconds(20))) << agent->Log();
  return agent;
}

CommandResult ForceRotation(const std::string& cluster, const std::string& secrets_dir,
                            const std::string& server_address) {
  return RunCommand({RotatorBinary(), "--cluster=" + cluster, "--secrets_dir=" + secrets_dir,
                     "--server_address=" + server_address, "--once", "--force"});
}

std::string SecretFile(const std::string& secrets_dir, const std::string& secret, const std::string& key) {
  return ReadFileOrEmpty(secrets::DirectorySecretStore::KeyPath(secrets_dir, "gloo-mesh", secret, key));
}

void WritePlainSecret(const std::string& secrets_dir, const std::string& secret,
                      const std::map<std::string, std::string>& data) {
  std::string dir = absl::StrCat(secrets_dir, "/gloo-mesh/", secret);
  std::filesystem::create_directories(dir);
  for (const auto& [key, value] : data) WriteFile(dir + "/" + key, value);
}

}  // namespace relay::e2e
