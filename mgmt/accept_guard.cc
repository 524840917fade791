// See accept_guard.h: an accept4 of the server binary's own, in front of the C library's.
#include "mgmt/accept_guard.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include "absl/time/clock.h"

namespace relay::mgmt::accept_guard {
namespace {

std::atomic<int> protected_port{-1};
std::atomic<int> shed_threshold{-1};  // a relay connection on this descriptor or above is shed
std::atomic<uint64_t> shed_count{0};
std::atomic<int64_t> last_shed_unix_nanos{0};
std::atomic<int> max_pending_handshakes{0};
std::atomic<int> pending_handshakes{0};
std::atomic<uint64_t> shed_for_handshakes{0};

std::mutex reserve_mu;
int reserve_fd = -1;  // guarded by reserve_mu

using Accept4 = int (*)(int, sockaddr*, socklen_t*, int);

Accept4 RealAccept4() {
  static const Accept4 real = reinterpret_cast<Accept4>(dlsym(RTLD_NEXT, "accept4"));
  return real;
}

int LocalPort(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return -1;
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return -1;
}

void CountShed() {
  shed_count.fetch_add(1, std::memory_order_relaxed);
  last_shed_unix_nanos.store(absl::ToUnixNanos(absl::Now()), std::memory_order_relaxed);
}

// Called with reserve_mu held: keeps one descriptor in hand for the EMFILE path.
void RefillReserveLocked() {
  if (reserve_fd < 0) reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

// No descriptor is left for the waiting connection: give up the reserve to take it
// and close it, so that the listener is not left with a connection it cannot accept.
bool ShedWithReserve(int listener) {
  std::lock_guard<std::mutex> lock(reserve_mu);
  RefillReserveLocked();
  if (reserve_fd < 0) return false;
  close(reserve_fd);
  reserve_fd = -1;
  int connection = RealAccept4()(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (connection >= 0) close(connection);
  RefillReserveLocked();
  if (connection < 0) return false;
  CountShed();
  return true;
}

}  // namespace

void Protect(int port, int reserve) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  int64_t threshold = static_cast<int64_t>(limit.rlim_cur) - reserve;
  if (limit.rlim_cur == RLIM_INFINITY || threshold > (int64_t{1} << 30)) threshold = int64_t{1} << 30;
  shed_threshold.store(static_cast<int>(std::max<int64_t>(threshold, 1)));
  protected_port.store(port);
  std::lock_guard<std::mutex> lock(reserve_mu);
  RefillReserveLocked();
}

bool Overloaded(absl::Duration window) {
  int threshold = shed_threshold.load();
  if (threshold > 0) {
    // Descriptors are handed out lowest first: if the lowest free one is at the
    // threshold, every one below it is taken and the next relay connection is shed.
    int probe = fcntl(0, F_DUPFD_CLOEXEC, 0);
    if (probe < 0) return true;
    close(probe);
    if (probe >= threshold) return true;
  }
  int64_t last = last_shed_unix_nanos.load(std::memory_order_relaxed);
  return last != 0 && absl::Now() - absl::FromUnixNanos(last) < window;
}

uint64_t ShedConnections() { return shed_count.load(std::memory_order_relaxed); }

void SetMaxPendingHandshakes(int max) { max_pending_handshakes.store(std::max(max, 0)); }
int PendingHandshakes() { return pending_handshakes.load(std::memory_order_relaxed); }
uint64_t ShedForHandshakes() { return shed_for_handshakes.load(std::memory_order_relaxed); }
void HandshakeStarted() { pending_handshakes.fetch_add(1, std::memory_order_relaxed); }
void HandshakeEnded() { pending_handshakes.fetch_sub(1, std::memory_order_relaxed); }

}  // namespace relay::mgmt::accept_guard

extern "C" int accept4(int listener, sockaddr* address, socklen_t* length, int flags) {
  using namespace relay::mgmt::accept_guard;  // NOLINT: this file's own helpers
  Accept4 real = RealAccept4();
  if (real == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int port = protected_port.load(std::memory_order_relaxed);
  while (true) {
    int connection = real(listener, address, length, flags);
    if (connection >= 0) {
      if (port < 0) return connection;
      const int max_pending = max_pending_handshakes.load(std::memory_order_relaxed);
      const bool handshakes_full =
          max_pending > 0 && pending_handshakes.load(std::memory_order_relaxed) >= max_pending;
      const bool descriptors_short = connection >= shed_threshold.load(std::memory_order_relaxed);
      // Only then is it worth asking which port this is (a system call).
      if ((!handshakes_full && !descriptors_short) || LocalPort(listener) != port) return connection;
      // Shed it, and take the next one: the caller is woken only by new connections, so
      // the queue is drained here.
      close(connection);
      if (handshakes_full) {
        shed_for_handshakes.fetch_add(1, std::memory_order_relaxed);
      } else {
        CountShed();
      }
      continue;
    }
    if (errno == EMFILE || errno == ENFILE) {
      if (ShedWithReserve(listener)) continue;
      errno = EAGAIN;  // keeps the caller's listener armed
    }
    return -1;
  }
}
