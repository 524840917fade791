#include "common/process_testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
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

// A port is free from FreePort's check until its server binds it, and tests run two at
// once: an etcd member of ha_test once found its port taken (by another member or another
// test's server) in a CI run. So FreePort claims a port for its process until the process
// exits: an exclusive flock on /tmp/relay-test-ports/<port>, the descriptor kept open
// (flock conflicts between open file descriptions, so this process cannot get it twice
// either). The descriptor, or -1 when someone holds the claim, or kNoClaims when no claim
// can be made (the directory cannot be made or opened): then the port is used unclaimed.
constexpr int kNoClaims = -2;
int Claim(int port) {
  static const char kDirectory[] = "/tmp/relay-test-ports";
  if (mkdir(kDirectory, 01777) != 0 && errno != EEXIST) return kNoClaims;
  int fd = open(absl::StrCat(kDirectory, "/", port).c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return kNoClaims;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return -1;
  }
  return fd;
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
    int claim = Claim(port);
    if (claim == -1) continue;
    if (Bindable(&port)) return port;  // the claim stays held until this process exits
    if (claim >= 0) close(claim);
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
