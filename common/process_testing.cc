#include "common/process_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "absl/random/random.h"
#include "absl/time/clock.h"
#include "common/test_dir.h"

extern char** environ;

namespace relay::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

}  // namespace

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

namespace {

// True when nothing holds 127.0.0.1:`port` (0: any port), which then is in `*port`.
bool Bindable(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(*port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  socklen_t length = sizeof(address);
  bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
               getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (bound) *port = ntohs(address.sin_port);
  return bound;
}

// The first port of the kernel's ephemeral range (32768 unless configured).
int EphemeralRangeStart() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return range >> low && low > 10000 ? low : 32768;
}

}  // namespace

int FreePort() {
  // Below the ephemeral range: a port from bind(0) may later become some connection's
  // local port while the test's server is down, and its restart on that port then fails
  // "Address already in use" (ha_test did, with 100 agents reconnecting).
  thread_local absl::BitGen random;
  const int below = EphemeralRangeStart();
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int port = absl::Uniform(random, 10000, below);
    if (Bindable(&port)) return port;
  }
  int port = 0;
  return Bindable(&port) ? port : 0;
}

Process::Process(std::vector<std::string> argv, std::string log_path) : log_path_(std::move(log_path)) {
  pid_ = Spawn(argv, log_path_);
}

Process::~Process() { Stop(); }

bool Process::Running() {
  if (pid_ <= 0 || exited_) return false;
  int status = 0;
  pid_t result = waitpid(pid_, &status, WNOHANG);
  if (result == pid_) {
    exited_ = true;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Process::Wait(absl::Duration timeout) {
  WaitFor([this] { return !Running(); }, timeout);
  return exited_ ? exit_status_ : -1;
}

void Process::Signal(int signal_number) {
  if (Running()) kill(pid_, signal_number);
}

void Process::Stop() {
  if (!Running()) return;
  kill(pid_, SIGTERM);
  if (Wait(absl::Seconds(5)) == -1) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(5));
  }
}

std::string Process::Log() const { return ReadFileBytes(log_path_); }

}  // namespace relay::testing
