#include "common/unix_socket_path.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;

// Binds a listening socket at `path`, connects to it at `connect_path`: true when both work.
bool BindAndConnect(const std::string& path, const std::string& connect_path) {
  auto address = [](const std::string& p) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, p.c_str(), sizeof(a.sun_path) - 1);
    return a;
  };
  int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un bound = address(path);
  bool ok = bind(server, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)) == 0 && listen(server, 1) == 0;
  int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un target = address(connect_path);
  ok = ok && connect(client, reinterpret_cast<sockaddr*>(&target), sizeof(target)) == 0;
  close(client);
  close(server);
  return ok;
}

class UnixSocketPathTest : public ::testing::Test {
 protected:
  std::string TempDir() {
    return relay::testing::MakeTestDir("sock");
  }
};

TEST_F(UnixSocketPathTest, AShortPathIsUsedAsItIs) {
  absl::StatusOr<UnixSocketPath> path = UnixSocketPath::For("/run/relay/admin.sock");
  ASSERT_THAT(path, IsOk());
  EXPECT_EQ(path->usable(), "/run/relay/admin.sock");
}

// A directory deeper than sun_path holds still takes a socket, and the file is where
// the long path says: other processes find it by that path.
TEST_F(UnixSocketPathTest, ALongPathWorksThroughTheDirectory) {
  std::string dir = TempDir() + "/" + std::string(60, 'd') + "/" + std::string(60, 'e');
  std::filesystem::create_directories(dir);
  std::string long_path = dir + "/admin.sock";
  ASSERT_GT(long_path.size(), UnixSocketPath::kMaxLength);
  absl::StatusOr<UnixSocketPath> path = UnixSocketPath::For(long_path);
  ASSERT_THAT(path, IsOk());
  EXPECT_LE(path->usable().size(), UnixSocketPath::kMaxLength);
  EXPECT_EQ(path->path(), long_path);
  absl::StatusOr<UnixSocketPath> other = UnixSocketPath::For(long_path);  // as a client would
  ASSERT_THAT(other, IsOk());
  EXPECT_TRUE(BindAndConnect(path->usable(), other->usable()));
  EXPECT_TRUE(std::filesystem::is_socket(long_path));
}

TEST_F(UnixSocketPathTest, AMissingDirectoryIsNotFound) {
  EXPECT_THAT(UnixSocketPath::For(TempDir() + "/" + std::string(120, 'x') + "/admin.sock"),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace relay
