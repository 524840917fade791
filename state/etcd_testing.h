#ifndef RELAY_STATE_ETCD_TESTING_H_
#define RELAY_STATE_ETCD_TESTING_H_

// A real etcd for tests (Debian's etcd-server, which tools/bazel installs): one member,
// or a cluster of several, on free loopback ports, data under TEST_TMPDIR, stopped when
// destroyed; plaintext, or TLS with client-certificate authentication as production
// etcd runs.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process_testing.h"
#include "grpcpp/security/credentials.h"

namespace relay::state::testing {

// PEM files for an etcd that serves TLS and asks every client for a certificate
// (--client-cert-auth): `ca_file` is what it trusts client certificates from; the
// harness itself connects with `client_cert_file` and checks the server against
// `ca_file` too.
struct EtcdTlsFiles {
  std::string ca_file;
  std::string server_cert_file;
  std::string server_key_file;
  std::string client_cert_file;
  std::string client_key_file;
};

class EtcdUnderTest {
 public:
  // Starts `members` members as one cluster and waits (up to 30 s) until every one
  // serves. FAILED_PRECONDITION, with their logs, when they do not. With `tls` the
  // members serve clients over TLS only (peers stay plaintext on loopback).
  static absl::StatusOr<std::unique_ptr<EtcdUnderTest>> Start(int members = 1,
                                                              const EtcdTlsFiles* tls = nullptr);
  ~EtcdUnderTest();

  // What the harness connects to the members with (TLS with its client certificate, or
  // plaintext).
  std::shared_ptr<grpc::ChannelCredentials> credentials() const { return credentials_; }

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
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
};

// The raw value of `key` in etcd (empty when absent), read around the store.
std::string ReadEtcdValue(EtcdUnderTest& etcd, const std::string& key);

// True when etcd's history before `revision` has been compacted away (a read at it is
// refused as out of range).
bool EtcdCompactedPast(EtcdUnderTest& etcd, int64_t revision);

}  // namespace relay::state::testing

#endif  // RELAY_STATE_ETCD_TESTING_H_
