#include "state/etcd_testing.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/test_dir.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace relay::state::testing {
namespace {

// True when etcd answers a read at `endpoint`.
bool Serves(const std::string& endpoint) {
  auto stub = etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  etcdserverpb::RangeRequest request;
  request.set_key("health");
  etcdserverpb::RangeResponse response;
  return stub->Range(&context, request, &response).ok();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdUnderTest>> EtcdUnderTest::Start() {
  std::unique_ptr<EtcdUnderTest> etcd(new EtcdUnderTest);
  etcd->dir_ = relay::testing::MakeTestDir("etcd");
  if (etcd->dir_.empty()) return absl::InternalError("cannot make a directory for etcd");
  int client_port = relay::testing::FreePort();
  int peer_port = relay::testing::FreePort();
  std::string client_url = absl::StrCat("http://127.0.0.1:", client_port);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
  etcd->endpoint_ = absl::StrCat("127.0.0.1:", client_port);
  etcd->argv_ = {"etcd", "--name=test", "--data-dir=" + etcd->dir_ + "/data",
                 "--listen-client-urls=" + client_url, "--advertise-client-urls=" + client_url,
                 "--listen-peer-urls=" + peer_url, "--initial-advertise-peer-urls=" + peer_url,
                 "--initial-cluster=test=" + peer_url, "--log-level=warn"};
  RETURN_IF_ERROR(etcd->Launch());
  return etcd;
}

absl::Status EtcdUnderTest::Launch() {
  process_ = std::make_unique<relay::testing::Process>(argv_, dir_ + "/etcd.log");
  bool up = relay::testing::WaitFor([&] { return !process_->Running() || Serves(endpoint_); }, absl::Seconds(30));
  if (!up || !process_->Running()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd did not start (it comes from Debian's etcd-server, which tools/bazel installs):\n", process_->Log()));
  }
  return absl::OkStatus();
}

void EtcdUnderTest::Stop() {
  if (process_) process_->Stop();
}

absl::Status EtcdUnderTest::Restart() {
  Stop();
  return Launch();
}

EtcdUnderTest::~EtcdUnderTest() { Stop(); }

std::string ReadEtcdValue(EtcdUnderTest& etcd, const std::string& key) {
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateChannel(etcd.endpoint(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  if (!kv->Range(&context, request, &response).ok() || response.kvs_size() == 0) return "";
  return response.kvs(0).value();
}

}  // namespace relay::state::testing
