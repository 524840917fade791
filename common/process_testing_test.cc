#include "common/process_testing.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace relay::testing {
namespace {

TEST(FreePortTest, NeverHandsOutAPortTwice) {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int ephemeral_start = 0;
  ASSERT_TRUE(range >> ephemeral_start);
  // 500 draws from ~22,000 ports repeat one about 5 times on average without claims.
  std::set<int> ports;
  for (int i = 0; i < 500; ++i) {
    int port = FreePort();
    ASSERT_GE(port, 10000);
    ASSERT_LT(port, ephemeral_start);
    EXPECT_TRUE(ports.insert(port).second) << "port " << port << " handed out twice";
  }
}

TEST(FreePortTest, AnotherProcessCannotClaimAPortThisOneHolds) {
  int port = FreePort();
  // What FreePort in another test process does first: an exclusive, non-blocking flock.
  int fd = open(absl::StrCat("/tmp/relay-test-ports/", port).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "no claim file for port " << port;
  EXPECT_NE(flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(errno, EWOULDBLOCK);
  close(fd);
}

}  // namespace
}  // namespace relay::testing
