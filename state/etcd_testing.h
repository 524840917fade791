#ifndef RELAY_STATE_ETCD_TESTING_H_
#define RELAY_STATE_ETCD_TESTING_H_

// A real etcd for tests (Debian's etcd-server, which tools/bazel installs): one member,
// or a cluster of several, on free loopback ports, data under TEST_TMPDIR, stopped when
// destroyed.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process_testing.h"

namespace relay::state::testing {

class EtcdUnderTest {
 public:
  // Starts `members` members as one cluster and waits (up to 30 s) until every one
  // serves. FAILED_PRECONDITION, with their logs, when they do not.
  static absl::StatusOr<std::unique_ptr<EtcdUnderTest>> Start(int members = 1);
  ~EtcdUnderTest();

  // host:port of the first member's client URL.
  const std::string& endpoint() const { return members_[0].endpoint; }
  // host:port of every member, comma-separated (as --etcd_endpoints takes them).
  std::string endpoints() const;
  int size() const { return static_cast<int>(members_.size()); }
  relay::testing::Process& process(int member = 0) { return *members_[member].process; }

  // Stops every member (SIGTERM); Restart() starts them again on the same ports and data.
  void Stop();
  absl::Status Restart();

  // The index of the member every running member names as leader, once they agree
  // (waiting up to `timeout`); NOT_FOUND naming what each said when they do not.
  absl::StatusOr<int> WaitForLeader(absl::Duration timeout = absl::Seconds(30));
  // SIGKILL to one member, as a crash.
  void Kill(int member);

 private:
  struct Member {
    std::string name;
    std::string endpoint;
    std::vector<std::string> argv;
    std::unique_ptr<relay::testing::Process> process;
  };

  EtcdUnderTest() = default;
  absl::Status Launch();

  std::string dir_;
  std::vector<Member> members_;
};

// The raw value of `key` in etcd (empty when absent), read around the store.
std::string ReadEtcdValue(EtcdUnderTest& etcd, const std::string& key);

// True when etcd's history before `revision` has been compacted away (a read at it is
// refused as out of range).
bool EtcdCompactedPast(EtcdUnderTest& etcd, int64_t revision);

}  // namespace relay::state::testing

#endif  // RELAY_STATE_ETCD_TESTING_H_
