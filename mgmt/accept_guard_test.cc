#include "mgmt/accept_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common/tcp_testing.h"
#include "gtest/gtest.h"

namespace relay::mgmt::accept_guard {
namespace {

using ::relay::testing::ConnectToLocalhost;

// The server end closed the connection (EOF or reset), seen from the client.
bool ClosedByServer(int client) {
  pollfd waiting{client, POLLIN, 0};
  if (poll(&waiting, 1, 10000) != 1) return false;
  char byte;
  ssize_t n = read(client, &byte, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// One test: the guard's state is process-wide.
TEST(AcceptGuardTest, ShedsBelowTheReserveAndNeverLetsEmfileReachTheCaller) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 256), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  int port = ntohs(address.sin_port);

  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = 128;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  Protect(port, 32);  // relay connections only on descriptors below 96
  EXPECT_FALSE(Overloaded(absl::ZeroDuration()));

  // 1. More waiting connections than fit below the reserve: the ones that fit are
  // accepted, the rest are closed, and the caller gets EAGAIN, not an error.
  std::vector<int> clients;
  for (int i = 0; i < 60; ++i) {
    int client = ConnectToLocalhost(port);
    ASSERT_GE(client, 0);
    clients.push_back(client);
  }
  std::vector<int> accepted;
  while (true) {
    int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (connection < 0) {
      EXPECT_EQ(errno, EAGAIN);
      break;
    }
    EXPECT_LT(connection, 96);
    accepted.push_back(connection);
  }
  ASSERT_FALSE(accepted.empty());
  EXPECT_EQ(accepted.size() + ShedConnections(), clients.size());
  EXPECT_GT(ShedConnections(), 0u);
  EXPECT_TRUE(Overloaded(absl::Seconds(60)));
  EXPECT_TRUE(ClosedByServer(clients.back()));  // among the shed ones

  // 2. Every descriptor taken: accept4 would fail with EMFILE. The guard closes the
  // waiting connection with its reserve descriptor and answers EAGAIN.
  for (int fd : accepted) close(fd);
  for (int fd : clients) close(fd);
  accepted.clear();
  clients.clear();
  int client = ConnectToLocalhost(port);
  ASSERT_GE(client, 0);
  std::vector<int> filler;
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
  ASSERT_EQ(errno, EMFILE);
  uint64_t shed_before = ShedConnections();
  EXPECT_EQ(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(ShedConnections(), shed_before + 1);
  EXPECT_TRUE(ClosedByServer(client));
  close(client);

  // 3. Descriptors free again: connections are accepted as before.
  for (int fd : filler) close(fd);
  client = ConnectToLocalhost(port);
  ASSERT_GE(client, 0);
  int connection = -1;
  for (int attempt = 0; attempt < 100 && connection < 0; ++attempt) {
    connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) usleep(10000);
  }
  EXPECT_GE(connection, 0);
  EXPECT_FALSE(Overloaded(absl::ZeroDuration()));
  close(connection);
  close(client);
  close(listener);
}

}  // namespace
}  // namespace relay::mgmt::accept_guard
