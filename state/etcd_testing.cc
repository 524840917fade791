#include "state/etcd_testing.h"

#include <signal.h>

#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/test_dir.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace relay::state::testing {
namespace {

// True when etcd answers a read at `endpoint`.
bool Serves(const std::string& endpoint, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  auto stub = etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  etcdserverpb::RangeRequest request;
  request.set_key("health");
  etcdserverpb::RangeResponse response;
  return stub->Range(&context, request, &response).ok();
}

// The member's own id and the leader it knows (0 when none), from the Status call.
struct MemberStatus {
  uint64_t id = 0;
  uint64_t leader = 0;
};
std::optional<MemberStatus> StatusOf(const std::string& endpoint,
                                     const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  auto stub = etcdserverpb::Maintenance::NewStub(grpc::CreateChannel(endpoint, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  etcdserverpb::StatusResponse response;
  if (!stub->Status(&context, etcdserverpb::StatusRequest(), &response).ok()) return std::nullopt;
  return MemberStatus{response.header().member_id(), response.leader()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdUnderTest>> EtcdUnderTest::Start(int members, const EtcdTlsFiles* tls) {
  std::unique_ptr<EtcdUnderTest> etcd(new EtcdUnderTest);
  etcd->dir_ = relay::testing::MakeTestDir("etcd");
  if (etcd->dir_.empty()) return absl::InternalError("cannot make a directory for etcd");
  etcd->credentials_ = grpc::InsecureChannelCredentials();
  if (tls != nullptr) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = relay::testing::ReadFileBytes(tls->ca_file);
    options.pem_cert_chain = relay::testing::ReadFileBytes(tls->client_cert_file);
    options.pem_private_key = relay::testing::ReadFileBytes(tls->client_key_file);
    etcd->credentials_ = grpc::SslCredentials(options);
  }
  std::vector<std::string> peers;
  std::vector<std::string> peer_urls;
  for (int i = 0; i < members; ++i) {
    Member member;
    member.name = absl::StrCat("m", i);
    member.endpoint = absl::StrCat("127.0.0.1:", relay::testing::FreePort());
    peer_urls.push_back(absl::StrCat("http://127.0.0.1:", relay::testing::FreePort()));
    peers.push_back(absl::StrCat(member.name, "=", peer_urls.back()));
    etcd->members_.push_back(std::move(member));
  }
  for (int i = 0; i < members; ++i) {
    Member& member = etcd->members_[i];
    std::string client_url = (tls != nullptr ? "https://" : "http://") + member.endpoint;
    member.argv = {"etcd", "--name=" + member.name, "--data-dir=" + etcd->dir_ + "/" + member.name,
                   "--listen-client-urls=" + client_url, "--advertise-client-urls=" + client_url,
                   "--listen-peer-urls=" + peer_urls[i], "--initial-advertise-peer-urls=" + peer_urls[i],
                   "--initial-cluster=" + absl::StrJoin(peers, ","), "--initial-cluster-state=new",
                   "--initial-cluster-token=relay-test", "--log-level=warn"};
    if (tls != nullptr) {
      for (std::string flag : {"--cert-file=" + tls->server_cert_file, "--key-file=" + tls->server_key_file,
                               "--trusted-ca-file=" + tls->ca_file, std::string("--client-cert-auth")}) {
        member.argv.push_back(std::move(flag));
      }
    }
  }
  RETURN_IF_ERROR(etcd->Launch());
  return etcd;
}

absl::Status EtcdUnderTest::Launch() {
  // All at once: a member of several waits for its peers before it serves.
  for (Member& member : members_) {
    member.process = std::make_unique<relay::testing::Process>(member.argv, dir_ + "/" + member.name + ".log");
  }
  auto all_serve = [&] {
    for (Member& member : members_) {
      if (!member.process->Running() || !Serves(member.endpoint, credentials_)) return false;
    }
    return true;
  };
  auto any_exited = [&] {
    for (Member& member : members_) {
      if (!member.process->Running()) return true;
    }
    return false;
  };
  bool up = relay::testing::WaitFor([&] { return any_exited() || all_serve(); }, absl::Seconds(30));
  if (!up || any_exited()) {
    std::string logs;
    for (Member& member : members_) absl::StrAppend(&logs, member.name, ":\n", member.process->Log(), "\n");
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd did not start (it comes from Debian's etcd-server, which tools/bazel installs):\n", logs));
  }
  return absl::OkStatus();
}

std::string EtcdUnderTest::endpoints() const {
  std::vector<std::string> endpoints;
  for (const Member& member : members_) endpoints.push_back(member.endpoint);
  return absl::StrJoin(endpoints, ",");
}

void EtcdUnderTest::Stop() {
  for (Member& member : members_) {
    if (member.process) member.process->Stop();
  }
}

absl::Status EtcdUnderTest::Restart() {
  Stop();
  return Launch();
}

void EtcdUnderTest::Kill(int member) {
  members_[member].process->Signal(SIGKILL);
  members_[member].process->Wait(absl::Seconds(10));
}

absl::StatusOr<int> EtcdUnderTest::WaitForLeader(absl::Duration timeout) {
  std::string said;
  int leader = -1;
  bool agreed = relay::testing::WaitFor(
      [&] {
        said.clear();
        std::map<uint64_t, int> index_of;
        std::optional<uint64_t> agreed_on;
        bool disagree = false;
        for (int i = 0; i < size(); ++i) {
          if (!members_[i].process->Running()) continue;
          std::optional<MemberStatus> status = StatusOf(members_[i].endpoint, credentials_);
          if (!status) {
            absl::StrAppend(&said, members_[i].name, " did not answer; ");
            return false;
          }
          absl::StrAppend(&said, members_[i].name, " says ", status->leader, "; ");
          index_of[status->id] = i;
          if (status->leader == 0 || (agreed_on && *agreed_on != status->leader)) disagree = true;
          agreed_on = status->leader;
        }
        if (disagree || !agreed_on || index_of.count(*agreed_on) == 0) return false;
        leader = index_of[*agreed_on];
        return true;
      },
      timeout);
  if (!agreed) return absl::NotFoundError(absl::StrCat("the etcd members agree on no leader: ", said));
  return leader;
}

EtcdUnderTest::~EtcdUnderTest() { Stop(); }

std::string ReadEtcdValue(EtcdUnderTest& etcd, const std::string& key) {
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateChannel(etcd.endpoint(), etcd.credentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  if (!kv->Range(&context, request, &response).ok() || response.kvs_size() == 0) return "";
  return response.kvs(0).value();
}

bool EtcdCompactedPast(EtcdUnderTest& etcd, int64_t revision) {
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateChannel(etcd.endpoint(), etcd.credentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::RangeRequest request;
  request.set_key("any");
  request.set_revision(revision);
  etcdserverpb::RangeResponse response;
  return kv->Range(&context, request, &response).error_code() == grpc::StatusCode::OUT_OF_RANGE;
}

}  // namespace relay::state::testing
