#include "common/state_lock.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

using ::relay::testing::IsOk;
using ::testing::HasSubstr;

std::string TempDir() {
  return relay::testing::MakeTestDir("lock");
}

// The lock is per process (a second holder is another process): the child tries while
// the parent holds it, and again after the parent let go.
TEST(StateLockTest, ASecondProcessIsRefusedWithTheHoldersPidUntilTheFirstLetsGo) {
  std::string dir = TempDir() + "/state/mgmt";
  auto held = StateLock::Acquire(dir, "relay-mgmt-server", "Stop it, or choose another --secrets_dir.");
  ASSERT_THAT(held, IsOk());

  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto second = StateLock::Acquire(dir, "relay-mgmt-server", "Stop it, or choose another --secrets_dir.");
    std::string message = second.ok() ? "acquired" : std::string(second.status().message());
    (void)!write(pipe_fds[1], message.data(), message.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  char buffer[1024];
  ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
  close(pipe_fds[0]);
  waitpid(child, nullptr, 0);
  std::string message(buffer, n > 0 ? static_cast<size_t>(n) : 0);
  EXPECT_THAT(message, HasSubstr(absl::StrCat("in use by process ", getpid())));
  EXPECT_THAT(message, HasSubstr("Stop it, or choose another --secrets_dir."));

  held->reset();
  pid_t again = fork();
  ASSERT_GE(again, 0);
  if (again == 0) _exit(StateLock::Acquire(dir, "relay-mgmt-server", "").ok() ? 0 : 1);
  int status = 0;
  waitpid(again, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace relay
