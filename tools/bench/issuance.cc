// Issuance benchmark: Register and Renew throughput of the real management server at
// several concurrencies over persistent channels, beside the crypto bound (P-256 CSR
// verify + certificate sign in a loop) and, when Debian's golang-cfssl is installed,
// `cfssl serve` signing the same CSRs. Server, cfssl and the crypto loop are pinned to
// one core (CPU 0); the load runs on the other.
//
//   tools/bazel run -c opt //tools/bench:issuance -- [--requests=2000] [--concurrency=1,8,64]
//
// Everything runs on 127.0.0.1, is bounded by --requests per run, and stops by itself.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/flags.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "grpcpp/generic/generic_stub.h"
#include "httplib.h"
#include "pki/ca.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tools/bench/bench_util.h"

ABSL_FLAG(int, requests, 2000, "Requests per measured run (each op and concurrency).");
ABSL_FLAG(std::vector<std::string>, concurrency, std::vector<std::string>({"1", "8", "64"}),
          "Concurrent callers, comma-separated.");
ABSL_FLAG(bool, cfssl, true, "Also measure `cfssl serve` when /usr/bin/cfssl exists.");
ABSL_FLAG(std::string, server, "mgmt/server", "Path of the management server binary.");
ABSL_FLAG(std::vector<std::string>, server_flags, {},
          "Extra flags for the server, comma-separated, e.g. --state=etcd,--etcd_endpoints=127.0.0.1:2379,"
          "--state_plaintext_secrets to measure a replica on etcd.");

namespace {

namespace v1 = ::relay::v1;
// The name the server's certificate carries by default.
constexpr const char* kAuthority = ::relay::config::kDefaultAuthority;

using ::relay::bench::CpuSeconds;
using ::relay::bench::PinTo;
using ::relay::bench::ReadFile;
using ::relay::bench::Spawn;

void Stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    absl::SleepFor(absl::Milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

struct Result {
  std::string what;
  int concurrency = 0;
  double per_second = 0;
  double per_server_cpu_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int errors = 0;
};

// Runs `call(worker, index)` `total` times spread over `concurrency` threads, after one
// untimed call per worker: channels connect lazily, and a TLS handshake (~1.3 ms of
// server CPU each) is not part of throughput over persistent channels.
template <typename Call>
Result Measure(const std::string& what, int concurrency, int total, pid_t server, Call call) {
  std::vector<std::vector<double>> latencies(concurrency);
  std::atomic<int> next{0};
  std::atomic<int> errors{0};
  {
    std::vector<std::thread> warm_up;
    for (int worker = 0; worker < concurrency; ++worker) {
      warm_up.emplace_back([&, worker] {
        if (!call(worker, worker)) errors++;
      });
    }
    for (auto& thread : warm_up) thread.join();
  }
  double cpu_before = CpuSeconds(server);
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int worker = 0; worker < concurrency; ++worker) {
    threads.emplace_back([&, worker] {
      for (int i; (i = next++) < total;) {
        absl::Time begin = absl::Now();
        if (!call(worker, i)) errors++;
        latencies[worker].push_back(absl::ToDoubleMilliseconds(absl::Now() - begin));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  double cpu = CpuSeconds(server) - cpu_before;
  std::vector<double> all;
  for (auto& list : latencies) all.insert(all.end(), list.begin(), list.end());
  std::sort(all.begin(), all.end());
  Result result;
  result.what = what;
  result.concurrency = concurrency;
  result.per_second = total / seconds;
  result.per_server_cpu_second = cpu > 0 ? total / cpu : 0;
  result.p50_ms = all[all.size() / 2];
  result.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  result.errors = errors;
  return result;
}

std::vector<std::string> MakeCsrs(const std::string& prefix, int count, bool distinct_names) {
  std::vector<std::string> csrs;
  for (int i = 0; i < count; ++i) {
    auto key = relay::pki::GenerateKey();
    csrs.push_back(*relay::pki::CreateCsrPem(key->get(), distinct_names ? absl::StrCat(prefix, i) : prefix));
  }
  return csrs;
}

// The floor: verify one P-256 CSR signature and sign one certificate, on CPU 0.
Result CryptoBound(int total) {
  Result result;
  std::thread worker([&] {
    PinTo(0);
    auto agent_key = relay::pki::GenerateKey();
    auto ca_key = relay::pki::GenerateKey();
    std::string message(400, 'm');
    auto sign = [&](EVP_PKEY* key) {
      relay::pki::UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
      size_t length = 0;
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
      EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<const uint8_t*>(message.data()), message.size());
      std::string signature(length, '\0');
      EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(signature.data()), &length,
                     reinterpret_cast<const uint8_t*>(message.data()), message.size());
      signature.resize(length);
      return signature;
    };
    std::string csr_signature = sign(agent_key->get());
    absl::Time start = absl::Now();
    for (int i = 0; i < total; ++i) {
      relay::pki::UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, agent_key->get());
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const uint8_t*>(csr_signature.data()), csr_signature.size(),
                       reinterpret_cast<const uint8_t*>(message.data()), message.size());
      sign(ca_key->get());
    }
    result.per_second = total / absl::ToDoubleSeconds(absl::Now() - start);
  });
  worker.join();
  result.what = "crypto bound (P-256 verify + sign)";
  result.concurrency = 1;
  result.per_server_cpu_second = result.per_second;
  return result;
}

std::vector<Result> CfsslRuns(const std::string& dir, const std::vector<int>& concurrencies, int total,
                              const std::string& ca_pem, const std::string& ca_key_pem) {
  std::vector<Result> results;
  std::ofstream(dir + "/ca.pem") << ca_pem;
  std::ofstream(dir + "/ca-key.pem") << ca_key_pem;
  std::ofstream(dir + "/config.json")
      << R"({"signing":{"default":{"expiry":"720h","usages":["digital signature","client auth"]}}})";
  int port = 20000 + static_cast<int>(getpid() % 20000);
  pid_t cfssl = Spawn({"taskset", "-c", "0", "/usr/bin/cfssl", "serve", "-ca", dir + "/ca.pem", "-ca-key",
                       dir + "/ca-key.pem", "-config", dir + "/config.json", "-address", "127.0.0.1",
                       "-port", absl::StrCat(port)},
                      dir + "/cfssl.log");
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    httplib::Client probe("127.0.0.1", port);
    up = static_cast<bool>(probe.Get("/api/v1/cfssl/info"));
    if (!up) absl::SleepFor(absl::Milliseconds(100));
  }
  if (!up) {
    std::cerr << "cfssl serve did not start:\n" << ReadFile(dir + "/cfssl.log");
    Stop(cfssl);
    return results;
  }
  std::vector<std::string> csrs = MakeCsrs("cfssl-", 256, true);
  for (int concurrency : concurrencies) {
    std::vector<std::unique_ptr<httplib::Client>> clients;
    for (int i = 0; i < concurrency; ++i) {
      clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", port));
      clients.back()->set_keep_alive(true);
      // Headers and body go out in two writes: without TCP_NODELAY the body waits for
      // Go's delayed ACK (~40 ms a request), which would measure Nagle, not cfssl.
      clients.back()->set_tcp_nodelay(true);
    }
    results.push_back(Measure("cfssl serve /api/v1/cfssl/sign", concurrency, total, cfssl,
                              [&](int worker, int i) {
                                std::string csr = csrs[i % csrs.size()];
                                std::string escaped;
                                for (char c : csr) escaped += c == '\n' ? std::string("\\n") : std::string(1, c);
                                auto response = clients[worker]->Post(
                                    "/api/v1/cfssl/sign", absl::StrCat(R"({"certificate_request":")", escaped, "\"}"),
                                    "application/json");
                                return response && response->status == 200 &&
                                       response->body.find("\"success\":true") != std::string::npos;
                              }));
  }
  Stop(cfssl);
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage("relay-bench-issuance", "relay issuance benchmark (see the comment at the top of tools/bench/issuance.cc)");
  relay::ParseFlags(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const int total = absl::GetFlag(FLAGS_requests);
  std::vector<int> concurrencies;
  for (const std::string& c : absl::GetFlag(FLAGS_concurrency)) {
    int value;
    if (absl::SimpleAtoi(c, &value) && value > 0) concurrencies.push_back(value);
  }
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores < 2) std::cerr << "only one core: server and load share it\n";

  std::string dir = absl::StrCat("/tmp/relay-bench-issuance.", getpid());
  std::filesystem::create_directories(dir);
  std::vector<std::string> server_argv = {"taskset", "-c", "0", absl::GetFlag(FLAGS_server),
                                         "--secrets_dir=" + dir + "/mgmt", "--grpc_address=127.0.0.1:0",
                                         "--registrations_per_second_per_source=0",  // one source: 127.0.0.1
                                         "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0",
                                         "--ready_file=" + dir + "/ready", "--log_level=error"};
  for (const std::string& flag : absl::GetFlag(FLAGS_server_flags)) server_argv.push_back(flag);
  pid_t server = Spawn(server_argv, dir + "/server.log");
  for (int i = 0; i < 200 && ReadFile(dir + "/ready").empty(); ++i) absl::SleepFor(absl::Milliseconds(50));
  std::string ready = ReadFile(dir + "/ready");
  if (ready.empty()) {
    std::cerr << "server did not start:\n" << ReadFile(dir + "/server.log");
    return 1;
  }
  std::string address = relay::bench::AddressFromReadyFile(ready);
  std::string secrets = dir + "/mgmt/gloo-mesh/";
  std::string root = ReadFile(secrets + "relay-root-tls-secret/ca.crt");
  std::string token = ReadFile(secrets + "relay-identity-token-secret/token");
  PinTo(cores > 1 ? 1 : 0);

  std::vector<Result> results;
  std::cerr << "preparing CSRs...\n";
  int max_concurrency = *std::max_element(concurrencies.begin(), concurrencies.end());
  std::vector<std::string> register_csrs = MakeCsrs("bench-", std::max(total, 256), true);

  // The transport's own cost: gRPC's health check (an empty request, a two-byte answer,
  // no work) over the same server-authenticated TLS channels, on the same server.
  for (int concurrency : concurrencies) {
    std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
    for (int i = 0; i < concurrency; ++i) {
      stubs.push_back(std::make_unique<grpc::GenericStub>(relay::grpc_tls::CreateChannel(
          address, relay::grpc_tls::ServerAuthCredentials(root), kAuthority)));
    }
    results.push_back(Measure("gRPC floor: Health/Check", concurrency, total, server, [&](int worker, int) {
      grpc::ClientContext context;
      grpc::Slice empty("");
      grpc::ByteBuffer request(&empty, 1);
      grpc::ByteBuffer response;
      absl::Notification done;
      grpc::Status status;
      stubs[worker]->UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                               [&](grpc::Status s) {
                                 status = std::move(s);
                                 done.Notify();
                               });
      done.WaitForNotification();
      return status.ok();
    }));
  }

  // Register: server-authenticated TLS, one persistent channel per caller.
  for (int concurrency : concurrencies) {
    std::vector<std::unique_ptr<v1::Registration::Stub>> stubs;
    for (int i = 0; i < concurrency; ++i) {
      stubs.push_back(v1::Registration::NewStub(relay::grpc_tls::CreateChannel(
          address, relay::grpc_tls::ServerAuthCredentials(root), kAuthority)));
    }
    results.push_back(Measure("relay Register", concurrency, total, server, [&](int worker, int i) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", "Bearer " + token);
      v1::RegisterRequest request;
      request.set_cluster(absl::StrCat("bench-", i % register_csrs.size()));
      request.set_csr_pem(register_csrs[i % register_csrs.size()]);
      v1::CertificateResponse response;
      return stubs[worker]->Register(&context, request, &response).ok();
    }));
  }

  // Renew: mTLS, each caller a registered cluster with its own certificate.
  std::vector<std::unique_ptr<v1::Registration::Stub>> renewers;
  std::vector<std::vector<std::string>> renew_csrs;
  for (int worker = 0; worker < max_concurrency; ++worker) {
    std::string cluster = absl::StrCat("renewer-", worker);
    auto key = relay::pki::GenerateKey();
    auto register_stub = v1::Registration::NewStub(
        relay::grpc_tls::CreateChannel(address, relay::grpc_tls::ServerAuthCredentials(root), kAuthority));
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    v1::RegisterRequest request;
    request.set_cluster(cluster);
    request.set_csr_pem(*relay::pki::CreateCsrPem(key->get(), cluster));
    v1::CertificateResponse response;
    if (!register_stub->Register(&context, request, &response).ok()) {
      std::cerr << "registering " << cluster << " failed\n";
      return 1;
    }
    renewers.push_back(v1::Registration::NewStub(relay::grpc_tls::CreateChannel(
        address,
        relay::grpc_tls::MutualTlsCredentials(root, *relay::pki::PrivateKeyToPem(key->get()),
                                              response.certificate_chain_pem()),
        kAuthority)));
    renew_csrs.push_back(MakeCsrs(cluster, 8, false));
  }
  for (int concurrency : concurrencies) {
    results.push_back(Measure("relay Renew", concurrency, total, server, [&](int worker, int i) {
      grpc::ClientContext context;
      v1::RenewRequest request;
      request.set_csr_pem(renew_csrs[worker][i % renew_csrs[worker].size()]);
      v1::CertificateResponse response;
      return renewers[worker]->Renew(&context, request, &response).ok();
    }));
  }
  Stop(server);

  results.push_back(CryptoBound(std::max(total, 4000)));
  double bound = results.back().per_second;
  if (absl::GetFlag(FLAGS_cfssl) && access("/usr/bin/cfssl", X_OK) == 0) {
    std::string signing = secrets + "relay-tls-signing-secret/";
    for (Result& r : CfsslRuns(dir, concurrencies, total, ReadFile(signing + "tls.crt"), ReadFile(signing + "tls.key"))) {
      results.push_back(r);
    }
  }
  std::filesystem::remove_all(dir);

  auto cfssl_rate = [&](int concurrency) {
    for (const Result& r : results) {
      if (r.what.rfind("cfssl", 0) == 0 && r.concurrency == concurrency) return r.per_server_cpu_second;
    }
    return 0.0;
  };
  std::printf("%-36s %5s %10s %14s %10s %8s %8s %6s %9s %9s\n", "what", "conc", "certs/s", "per srv CPU-s",
              "srv us/op", "p50 ms", "p99 ms", "errors", "x cfssl", "of bound");
  for (const Result& r : results) {
    double cfssl = cfssl_rate(r.concurrency);
    bool ours = r.what.rfind("relay", 0) == 0;
    std::printf("%-36s %5d %10.0f %14.0f %10.0f %8.2f %8.2f %6d %9s %8.0f%%\n", r.what.c_str(), r.concurrency,
                r.per_second, r.per_server_cpu_second,
                r.per_server_cpu_second > 0 ? 1e6 / r.per_server_cpu_second : 0.0, r.p50_ms, r.p99_ms, r.errors,
                ours && cfssl > 0 ? absl::StrFormat("%.2f", r.per_server_cpu_second / cfssl).c_str() : "-",
                100 * r.per_server_cpu_second / bound);
  }
  std::printf("(per srv CPU-s: certificates (gRPC floor: calls) per CPU-second the server process used; srv us/op: "
              "its inverse; x cfssl compares per srv CPU-s with cfssl at the same concurrency; of bound: per "
              "CPU-second against the crypto bound)\n");
  return 0;
}
