#ifndef RELAY_COMMON_TCP_TESTING_H_
#define RELAY_COMMON_TCP_TESTING_H_

// Test helper: a plain TCP connection to 127.0.0.1, as a flood or an idle client makes.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace relay::testing {

// A connected socket to 127.0.0.1:`port`, or -1.
inline int ConnectToLocalhost(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace relay::testing

#endif  // RELAY_COMMON_TCP_TESTING_H_
