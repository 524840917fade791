#ifndef RELAY_STATE_ETCD_TESTING_H_
#define RELAY_STATE_ETCD_TESTING_H_

// A real etcd for tests (Debian's etcd-server, which tools/bazel installs): one member
// on free loopback ports, its data under TEST_TMPDIR, stopped when destroyed.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/process_testing.h"

namespace relay::state::testing {

class EtcdUnderTest {
 public:
  // Starts etcd and waits (up to 30 s) until it serves. FAILED_PRECONDITION, with its
  // log, when it does not.
  static absl::StatusOr<std::unique_ptr<EtcdUnderTest>> Start();
  ~EtcdUnderTest();

  // host:port of its client URL.
  const std::string& endpoint() const { return endpoint_; }
  relay::testing::Process& process() { return *process_; }

  // Stops etcd (SIGTERM); Restart() starts it again on the same ports and data.
  void Stop();
  absl::Status Restart();

 private:
  EtcdUnderTest() = default;
  absl::Status Launch();

  std::vector<std::string> argv_;

  std::string dir_;
  std::string endpoint_;
  std::unique_ptr<relay::testing::Process> process_;
};

// The raw value of `key` in etcd (empty when absent), read around the store.
std::string ReadEtcdValue(EtcdUnderTest& etcd, const std::string& key);

}  // namespace relay::state::testing

#endif  // RELAY_STATE_ETCD_TESTING_H_
