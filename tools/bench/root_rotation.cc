// Root rotation benchmark (issue 16): N simulated agents (default 10,000), each with its
// own key, certificate, mTLS connection and relay stream, from this one load process,
// against one management server pinned to CPU 0. An operator starts a root rotation
// (the Admin RPC relayctl ca rotate-root calls) and the rotation runs by itself: the
// bundle {A, B} is pushed to every stream and acknowledged (add), every agent is asked
// to renew within --renew_now_window and does (switch), the bundle {B} is pushed and
// acknowledged (retire). Reports how long after the start every agent had acknowledged
// the new bundle, when each phase ended, renewal failures and streams lost. All on
// 127.0.0.1, bounded (--timeout), stops by itself.
//
//   tools/bazel run -c opt //tools/bench:root_rotation -- [--agents=10000] [--renew_now_window=60s]
//
// The simulated agent acknowledges a bundle once its digest matches (a real agent also
// checks the certificates and writes a secret, on its own machine) and renews at a
// random moment within the window, as the agent does.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/flags.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "pki/certificate.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/fleet.h"

ABSL_FLAG(int, agents, 10000, "Number of agents.");
ABSL_FLAG(int, callers, 32, "Concurrent callers for Register and for the renewals.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5), "Server --heartbeat_interval (agents follow it).");
ABSL_FLAG(absl::Duration, renew_now_window, absl::Seconds(60), "Server --renew_now_window.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "Give up when the rotation has not finished by then.");
ABSL_FLAG(std::string, server, "mgmt/server", "Path of the management server binary.");
ABSL_FLAG(std::vector<std::string>, load_cpus, std::vector<std::string>({"0", "1"}),
          "CPUs the load process (the simulated agents) may run on; the server runs on CPU 0.");

namespace {

namespace v1 = ::relay::v1;
using ::relay::bench::Agent;
using ::relay::bench::AgentStream;
using ::relay::bench::CpuSeconds;
using ::relay::bench::Parallel;
using ::relay::bench::PinTo;
using ::relay::bench::ReadFile;
using ::relay::bench::RssMiB;


// Renewals the server asked for, each due at its own moment.
class RenewalQueue {
 public:
  void Add(int agent, absl::Time due) {
    absl::MutexLock lock(&mu_);
    due_.emplace(due, agent);
  }
  // The next agent whose renewal is due, or -1 when none is yet.
  int Next(absl::Time now) {
    absl::MutexLock lock(&mu_);
    if (due_.empty() || due_.begin()->first > now) return -1;
    int agent = due_.begin()->second;
    due_.erase(due_.begin());
    return agent;
  }

 private:
  absl::Mutex mu_;
  std::multimap<absl::Time, int> due_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage("relay-bench-root-rotation",
                  "root rotation under a simulated fleet (see the comment at the top of tools/bench/root_rotation.cc)");
  relay::ParseFlags(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const uint64_t files = relay::RaiseOpenFileLimit();
  const int n = absl::GetFlag(FLAGS_agents);
  if (static_cast<uint64_t>(n) + 200 > files) {
    std::cerr << "--agents=" << n << " needs more than the open-file limit of " << files << ": use fewer agents\n";
    return 1;
  }
  const absl::Duration interval = absl::GetFlag(FLAGS_heartbeat_interval);
  const absl::Duration window = absl::GetFlag(FLAGS_renew_now_window);

  const std::string dir = absl::StrCat("/tmp/relay-bench-root-rotation.", getpid());
  std::filesystem::create_directories(dir);
  const std::string log = dir + "/server.log";
  const std::string ready_file = dir + "/ready";
  pid_t server = relay::bench::Spawn(
      {"taskset", "-c", "0", absl::GetFlag(FLAGS_server), "--secrets_dir=" + dir + "/mgmt",
       "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0", "--health_address=127.0.0.1:0",
       "--registrations_per_second_per_source=0",  // every simulated cluster registers from 127.0.0.1
       "--ready_file=" + ready_file,
       "--heartbeat_interval=" + absl::FormatDuration(interval),
       "--renew_now_window=" + absl::FormatDuration(window)},
      log);
  for (int i = 0; i < 400 && ReadFile(ready_file).empty(); ++i) absl::SleepFor(absl::Milliseconds(50));
  const std::string address = relay::bench::AddressFromReadyFile(ReadFile(ready_file));
  if (server < 0 || address.empty()) {
    std::cerr << "server did not start:\n" << ReadFile(log);
    return 1;
  }
  auto stop_server = [&] {
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    std::filesystem::remove_all(dir);
  };
  const std::string secrets = dir + "/mgmt/gloo-mesh/";
  const std::string root = ReadFile(secrets + "relay-root-tls-secret/ca.crt");
  const std::string token = ReadFile(secrets + "relay-identity-token-secret/token");
  std::vector<int> load_cpus;
  for (const std::string& cpu : absl::GetFlag(FLAGS_load_cpus)) load_cpus.push_back(std::atoi(cpu.c_str()));
  if (!PinTo(load_cpus)) {
    std::cerr << "--load_cpus: this machine has none of these CPUs\n";
    stop_server();
    return 2;
  }
  auto admin = v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + dir + "/mgmt/admin.sock", grpc::InsecureChannelCredentials()));

  // Register and connect the fleet.
  std::vector<Agent> agents(n);
  absl::Time start = absl::Now();
  const int register_failures =
      relay::bench::RegisterFleet(agents, address, root, token, absl::GetFlag(FLAGS_callers));
  const absl::Duration registered_in = absl::Now() - start;

  // What the streams see of the rotation.
  std::atomic<int> connected{0};
  absl::Mutex rtt_mu;
  std::vector<double> rtts;
  absl::Mutex bundles_mu;
  std::map<std::string, int> bundle_acks;              // digest -> acks sent
  std::map<std::string, absl::Time> bundle_all_acked;  // digest -> when the last of n was sent
  std::map<std::string, int> bundle_roots;             // digest -> roots in it
  RenewalQueue renewals;
  std::atomic<int> renew_asked{0};
  std::mt19937_64 rng(7);
  absl::Mutex rng_mu;
  auto on_message = [&](int index) {
    return [&, index](AgentStream& stream, const v1::ServerMessage& message) {
      if (message.has_trust_bundle()) {
        const v1::TrustBundle& bundle = message.trust_bundle();
        if (relay::pki::Sha256Hex(bundle.ca_pem()) != bundle.digest()) return;
        v1::AgentMessage ack;
        ack.mutable_trust_bundle_ack()->set_digest(bundle.digest());
        stream.Send(std::move(ack));
        absl::MutexLock lock(&bundles_mu);
        if (++bundle_acks[bundle.digest()] == n) bundle_all_acked[bundle.digest()] = absl::Now();
        if (!bundle_roots.count(bundle.digest())) {
          auto certs = relay::pki::ParseCertificateChainPem(bundle.ca_pem());
          bundle_roots[bundle.digest()] = certs.ok() ? static_cast<int>(certs->size()) : 0;
        }
      } else if (message.has_renew_now()) {
        double draw;
        {
          absl::MutexLock lock(&rng_mu);
          draw = std::uniform_real_distribution<double>(0, 1)(rng);
        }
        renewals.Add(index, absl::Now() + absl::Milliseconds(message.renew_now().within_ms()) * draw);
        renew_asked++;
      }
    };
  };
  std::atomic<int> created{0};
  // Heartbeats from the first stream on (the server closes one silent for three intervals).
  std::atomic<bool> stop{false};
  const std::atomic<bool> record{false};
  std::thread heartbeats([&] {
    relay::bench::PaceHeartbeats([&](int i) { return std::atomic_load(&agents[i].stream); },
                                 [&] { return created.load(); }, interval, stop, record);
  });
  for (int i = 0; i < n; ++i) {
    Agent& agent = agents[i];
    relay::bench::OpenAgentChannel(agent, address, root);
    std::atomic_store(&agent.stream, std::make_shared<AgentStream>(agent.relay.get(), agent.cluster, &connected,
                                                                   &rtt_mu, &rtts, on_message(i)));
    created++;
  }
  // A stream that ends is opened again as the agent does (at once after one it was
  // welcomed on, then full-jitter backoff from 200 ms to 30 s); each reopening is counted.
  std::atomic<int> reopened{0};
  std::thread reconnects([&] {
    relay::bench::Reconnects reconnecting(n, 11, absl::Milliseconds(200), absl::Seconds(30));
    while (!stop) {
      reopened += reconnecting.Pass(
          absl::Now(), [&](int i) { return std::atomic_load(&agents[i].stream); },
          [&](int i) {
            std::atomic_store(&agents[i].stream, std::make_shared<AgentStream>(agents[i].relay.get(), agents[i].cluster,
                                                                               &connected, &rtt_mu, &rtts, on_message(i)));
          });
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  absl::Time deadline = absl::Now() + absl::Seconds(180);
  while (connected < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  const int connected_before = connected;
  const int reopened_before = reopened;
  // The first bundle (each stream's Hello names none) is acknowledged by all first.
  deadline = absl::Now() + absl::Seconds(120);
  auto acked_by_all = [&](int roots) {
    absl::MutexLock lock(&bundles_mu);
    for (const auto& [digest, count] : bundle_roots) {
      if (count == roots && bundle_all_acked.count(digest)) return true;
    }
    return false;
  };
  while (!acked_by_all(1) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));

  // Renewals as the agents make them: over each agent's own connection, when due.
  std::atomic<int> renewed{0}, renew_failures{0};
  std::vector<std::thread> renewers;
  for (int t = 0; t < absl::GetFlag(FLAGS_callers); ++t) {
    renewers.emplace_back([&] {
      while (!stop) {
        const int i = renewals.Next(absl::Now());
        if (i < 0) {
          absl::SleepFor(absl::Milliseconds(5));
          continue;
        }
        auto key = relay::pki::GenerateKey();
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        v1::RenewRequest request;
        request.set_csr_pem(*relay::pki::CreateCsrPem(key->get(), agents[i].cluster));
        v1::CertificateResponse response;
        (agents[i].registration->Renew(&context, request, &response).ok() ? renewed : renew_failures)++;
      }
    });
  }

  // The rotation: one call, then it runs by itself; the phases as the status shows them.
  const double server_cpu_before = CpuSeconds(server);
  const double rss_before = RssMiB(server);
  grpc::ClientContext start_context;
  start_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::AdminResponse started;
  const absl::Time rotation_start = absl::Now();
  grpc::Status start_status = admin->RotateRoot(&start_context, v1::RotateRootRequest(), &started);
  std::map<std::string, absl::Duration> phase_ended;  // phase -> since the start
  std::string phase = "add";
  int min_connected = n;
  const absl::Time give_up = rotation_start + absl::GetFlag(FLAGS_timeout);
  while (start_status.ok() && phase != "done" && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
    min_connected = std::min(min_connected, connected.load());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CaStatusResponse status;
    if (!admin->CaStatus(&context, v1::CaStatusRequest(), &status).ok()) continue;
    const std::string now_phase = status.root_rotation().phase();
    if (!now_phase.empty() && now_phase != phase) {
      phase_ended[phase] = absl::Now() - rotation_start;
      if (now_phase == "retire" && !phase_ended.count("switch")) phase_ended["switch"] = phase_ended[phase];
      phase = now_phase;
    }
  }
  const absl::Duration rotation_took = absl::Now() - rotation_start;
  const double server_cpu = CpuSeconds(server) - server_cpu_before;
  absl::Duration add_acked_in = absl::InfiniteDuration();
  {
    absl::MutexLock lock(&bundles_mu);
    for (const auto& [digest, roots] : bundle_roots) {
      if (roots == 2 && bundle_all_acked.count(digest)) add_acked_in = bundle_all_acked[digest] - rotation_start;
    }
  }
  const int connected_after = connected;
  const int reopened_during = reopened - reopened_before;
  stop = true;
  heartbeats.join();
  reconnects.join();
  for (auto& renewer : renewers) renewer.join();
  for (Agent& agent : agents) std::atomic_load(&agent.stream)->Cancel();
  deadline = absl::Now() + absl::Seconds(20);
  for (Agent& agent : agents) {
    while (!std::atomic_load(&agent.stream)->finished() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  }
  const double rss_after = RssMiB(server);
  stop_server();

  auto seconds = [](absl::Duration d) { return d == absl::InfiniteDuration() ? -1.0 : absl::ToDoubleSeconds(d); };
  std::printf("agents                        %d (registration failures %d, registered in %.1f s), %d connected\n", n,
              register_failures, absl::ToDoubleSeconds(registered_in), connected_before);
  if (!start_status.ok()) {
    std::printf("rotation                      did not start: %s\n", start_status.error_message().c_str());
    return 1;
  }
  std::printf("bundle {A,B} acked by all     %.1f s after the start (goal: 30 s)\n", seconds(add_acked_in));
  std::printf("phases ended                  add %.1f s, switch %.1f s, retire %.1f s after the start\n",
              seconds(phase_ended.count("add") ? phase_ended["add"] : absl::InfiniteDuration()),
              seconds(phase_ended.count("switch") ? phase_ended["switch"] : absl::InfiniteDuration()),
              seconds(phase_ended.count("retire") ? phase_ended["retire"] : absl::InfiniteDuration()));
  std::printf("whole rotation                %s in %.1f s (goal: 5 min; renew-now window %s)\n",
              phase == "done" ? "done" : absl::StrCat("stuck in ", phase).c_str(), absl::ToDoubleSeconds(rotation_took),
              absl::FormatDuration(window).c_str());
  std::printf("renewals                      %d asked, %d renewed, %d failed\n", renew_asked.load(), renewed.load(),
              renew_failures.load());
  std::printf("streams                       %d up before, at least %d throughout, %d after; %d reopened during "
              "the rotation\n", connected_before, min_connected, connected_after, reopened_during);
  std::printf("server                        %.1f s of CPU during the rotation; RSS %.0f -> %.0f MiB\n", server_cpu,
              rss_before, rss_after);
  return phase == "done" && renew_failures == 0 ? 0 : 1;
}
