// Fleet benchmark: N agents (default 10,000), each with its own key, certificate, mTLS
// connection and relay stream, from this one load process, against one management
// server pinned to CPU 0 (the load runs on the CPUs --load_cpus names). Reports time to
// register and connect them all, server memory per connected agent, heartbeat round
// trips, a rotation storm (every agent renews) and a reconnect storm (the server
// restarts). All on 127.0.0.1, bounded, stops by itself.
//
//   tools/bazel run -c opt //tools/bench:agents -- [--agents=10000] [--load_cpus=0,1]
//
// With --soak=DURATION (e.g. 1h) the storms give way to a soak: the fleet stays
// connected while every agent renews once per --soak_rotation_every (spread over it) and
// snapshots are pushed (--soak_pushes_per_minute, through the admin API); every minute
// it prints the server's RSS and open descriptors, the streams up, and the renewals and
// pushes so far with their failures; at the end, RSS growth after --soak_warmup.
//
// File descriptors: one per agent connection here and one per agent in the server; the
// hard limit on these machines is 20,000 per process, so one load process carries up
// to ~19,000 agents (both processes raise their soft limit to the hard one).
//
// The load process decodes each agent's PEM key and certificate once (pem_cache.cc):
// gRPC 1.51 rebuilds a TLS context from PEM for every connection, which real agents pay
// on their own machines but which would make this process, not the server, the bound.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/flags.h"
#include "common/backoff.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/fleet.h"

ABSL_FLAG(int, agents, 10000, "Number of agents.");
ABSL_FLAG(int, callers, 32, "Concurrent callers for Register and Renew.");
ABSL_FLAG(std::string, heartbeat_interval, "5s", "Server --heartbeat_interval (agents follow it).");
ABSL_FLAG(std::string, heartbeat_window, "10s", "How long heartbeats are measured once all are connected.");
ABSL_FLAG(std::string, server, "mgmt/server", "Path of the management server binary.");
ABSL_FLAG(absl::Duration, soak, absl::ZeroDuration(),
          "Instead of the rotation and reconnect storms, keep the fleet connected this long (e.g. 1h) under "
          "renewals and pushes, printing server RSS and descriptors every minute. 0: no soak.");
ABSL_FLAG(absl::Duration, soak_rotation_every, absl::Minutes(3),
          "In a soak, every agent renews once per this period, the renewals spread evenly over it.");
ABSL_FLAG(int, soak_pushes_per_minute, 1000, "In a soak, snapshots pushed a minute (one cluster each, in turn).");
ABSL_FLAG(absl::Duration, soak_warmup, absl::Minutes(5), "In a soak, RSS growth is measured from the end of this.");
ABSL_FLAG(std::string, load_cpus, "0,1",
          "CPUs the load process (the simulated agents) may run on, comma-separated, e.g. 1 or 0,1. "
          "The server always runs on CPU 0; with 0,1 part of the load shares its core.");

namespace {

namespace v1 = ::relay::v1;

using ::relay::bench::CpuSeconds;
using ::relay::bench::PinTo;
using ::relay::bench::ReadFile;
using ::relay::bench::Agent;
using ::relay::bench::AgentStream;
using ::relay::bench::Parallel;
using ::relay::bench::Percentile;
using ::relay::bench::RssMiB;

}  // namespace

int OpenDescriptors(pid_t pid) {
  std::error_code error;
  int count = 0;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count;
}

// The soak (--soak): renewals and pushes under a connected fleet, printed every minute.
// Returns the number of failures (renewals, pushes, streams lost).
int Soak(std::vector<Agent>& agents, pid_t server, const std::string& admin_socket) {
  const int n = static_cast<int>(agents.size());
  const absl::Duration duration = absl::GetFlag(FLAGS_soak);
  const absl::Duration period = std::max(absl::GetFlag(FLAGS_soak_rotation_every), absl::Seconds(1));
  const int pushes_per_minute = std::max(absl::GetFlag(FLAGS_soak_pushes_per_minute), 0);
  auto admin = v1::Admin::NewStub(grpc::CreateChannel("unix:" + admin_socket, grpc::InsecureChannelCredentials()));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> renewals{0}, renew_failures{0}, pushes{0}, push_failures{0};
  const absl::Time start = absl::Now();
  // Renewals: agent i renews at start + k * period + i * period / n, on four threads.
  constexpr int kRenewers = 4;
  std::vector<std::thread> renewers;
  for (int t = 0; t < kRenewers; ++t) {
    renewers.emplace_back([&, t] {
      for (int64_t round = 0; !stop; ++round) {
        for (int i = t; i < n && !stop; i += kRenewers) {
          const absl::Time due = start + period * round + period * i / n;
          while (!stop && absl::Now() < due) absl::SleepFor(std::min(due - absl::Now(), absl::Milliseconds(200)));
          if (stop) break;
          auto key = relay::pki::GenerateKey();
          v1::RenewRequest request;
          request.set_csr_pem(*relay::pki::CreateCsrPem(key->get(), agents[i].cluster));
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
          v1::CertificateResponse response;
          if (!agents[i].registration->Renew(&context, request, &response).ok()) renew_failures++;
          renewals++;
        }
      }
    });
  }
  // Pushes: one cluster at a time, in turn, paced to the rate.
  std::thread pusher([&] {
    if (pushes_per_minute == 0) return;
    const absl::Duration gap = absl::Minutes(1) / pushes_per_minute;
    for (int64_t k = 0; !stop; ++k) {
      const absl::Time due = start + gap * k;
      while (!stop && absl::Now() < due) absl::SleepFor(std::min(due - absl::Now(), absl::Milliseconds(200)));
      if (stop) break;
      v1::PushSnapshotRequest request;
      request.set_cluster(agents[k % n].cluster);
      v1::Resource* resource = request.add_resources();
      resource->set_name("soak.txt");
      resource->set_content(absl::StrCat("push ", k));
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::PushSnapshotResponse response;
      if (!admin->PushSnapshot(&context, request, &response).ok()) push_failures++;
      pushes++;
    }
  });
  auto streams_up = [&] {
    int up = 0;
    for (Agent& agent : agents) {
      auto stream = std::atomic_load(&agent.stream);
      if (stream && !stream->finished()) ++up;
    }
    return up;
  };
  std::printf("soak: %d agents for %s, each renewing every %s, %d pushes a minute\n", n,
              absl::FormatDuration(duration).c_str(), absl::FormatDuration(period).c_str(), pushes_per_minute);
  std::printf("soak  minute  server RSS MiB  descriptors  streams up  renewals (failed)  pushes (failed)\n");
  double rss_after_warmup = -1, rss_last = 0;
  int fds_min = 1 << 30, fds_max = 0, up_min = n;
  const absl::Time warmed = start + absl::GetFlag(FLAGS_soak_warmup);
  for (int minute = 1; start + absl::Minutes(minute) <= start + duration; ++minute) {
    absl::SleepFor(start + absl::Minutes(minute) - absl::Now());
    rss_last = RssMiB(server);
    const int fds = OpenDescriptors(server);
    const int up = streams_up();
    if (rss_after_warmup < 0 && absl::Now() >= warmed) rss_after_warmup = rss_last;
    if (absl::Now() >= warmed) {
      fds_min = std::min(fds_min, fds);
      fds_max = std::max(fds_max, fds);
    }
    up_min = std::min(up_min, up);
    std::printf("soak  %6d  %13.1f  %11d  %10d  %9lld (%lld)  %9lld (%lld)\n", minute, rss_last, fds, up,
                static_cast<long long>(renewals.load()), static_cast<long long>(renew_failures.load()),
                static_cast<long long>(pushes.load()), static_cast<long long>(push_failures.load()));
    std::fflush(stdout);
  }
  stop = true;
  for (std::thread& renewer : renewers) renewer.join();
  pusher.join();
  const int lost = n - up_min;
  if (rss_after_warmup > 0) {
    std::printf("soak result: RSS %.1f MiB after warm-up, %.1f MiB at the end (%+.1f%%); descriptors %d..%d after "
                "warm-up; %lld renewals, %lld failed; %lld pushes, %lld failed; %d streams lost\n",
                rss_after_warmup, rss_last, (rss_last - rss_after_warmup) * 100 / rss_after_warmup, fds_min,
                fds_max, static_cast<long long>(renewals.load()), static_cast<long long>(renew_failures.load()),
                static_cast<long long>(pushes.load()), static_cast<long long>(push_failures.load()), lost);
  } else {
    std::printf("soak result: shorter than the warm-up (--soak_warmup): no growth figure; %lld renewals, %lld "
                "failed; %lld pushes, %lld failed; %d streams lost\n",
                static_cast<long long>(renewals.load()), static_cast<long long>(renew_failures.load()),
                static_cast<long long>(pushes.load()), static_cast<long long>(push_failures.load()), lost);
  }
  return static_cast<int>(renew_failures + push_failures) + lost;
}

int main(int argc, char** argv) {
  relay::SetUsage("relay-bench-agents", "relay fleet benchmark (see the comment at the top of tools/bench/agents.cc)");
  relay::ParseFlags(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  uint64_t files = relay::RaiseOpenFileLimit();
  const int n = absl::GetFlag(FLAGS_agents);
  if (static_cast<uint64_t>(n) + 200 > files) {
    std::cerr << "--agents=" << n << " needs more than the open-file limit of " << files
              << " in this process: use fewer agents\n";
    return 1;
  }
  absl::Duration window;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_heartbeat_window), &window)) {
    std::cerr << "--heartbeat_window=" << absl::GetFlag(FLAGS_heartbeat_window)
              << ": expected a duration such as 10s\n";
    return 2;
  }
  std::vector<int> load_cpus;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_load_cpus), ',')) {
    int cpu = -1;
    if (!absl::SimpleAtoi(part, &cpu) || cpu < 0 || cpu >= CPU_SETSIZE) {
      std::cerr << "--load_cpus=" << absl::GetFlag(FLAGS_load_cpus)
                << ": expected CPU numbers separated by commas, e.g. 1 or 0,1\n";
      return 2;
    }
    load_cpus.push_back(cpu);
  }

  std::string dir = absl::StrCat("/tmp/relay-bench-agents.", getpid());
  std::filesystem::create_directories(dir);
  std::string log = dir + "/server.log";
  int server_run = 0;
  // Starts the server (again) on `port` (0: any) and returns its address, or "".
  auto start_server = [&](const std::string& port, pid_t* pid) -> std::string {
    std::string ready_file = absl::StrCat(dir, "/ready.", server_run++);
    std::vector<std::string> server_argv = {
        "taskset", "-c", "0", absl::GetFlag(FLAGS_server), "--secrets_dir=" + dir + "/mgmt",
        "--grpc_address=127.0.0.1:" + port, "--metrics_address=127.0.0.1:0",
        // Every simulated cluster registers from 127.0.0.1: one source for the limit.
        "--registrations_per_second_per_source=0",
        "--health_address=127.0.0.1:0", "--ready_file=" + ready_file, "--log_level=warning",
        "--heartbeat_interval=" + absl::GetFlag(FLAGS_heartbeat_interval)};
    *pid = relay::bench::Spawn(server_argv, log);
    if (*pid < 0) return "";
    for (int i = 0; i < 400 && ReadFile(ready_file).empty(); ++i) absl::SleepFor(absl::Milliseconds(50));
    return relay::bench::AddressFromReadyFile(ReadFile(ready_file));
  };
  pid_t server = -1;
  std::string address = start_server("0", &server);
  if (address.empty()) {
    std::cerr << "server did not start:\n" << ReadFile(log);
    return 1;
  }
  std::string secrets = dir + "/mgmt/gloo-mesh/";
  std::string root = ReadFile(secrets + "relay-root-tls-secret/ca.crt");
  std::string token = ReadFile(secrets + "relay-identity-token-secret/token");
  if (!PinTo(load_cpus)) {
    std::cerr << "--load_cpus=" << absl::GetFlag(FLAGS_load_cpus) << ": this machine has none of these CPUs\n";
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    std::filesystem::remove_all(dir);
    return 2;
  }
  double rss_idle = RssMiB(server);

  // 1. Keys and registration.
  std::vector<Agent> agents(n);
  absl::Time start = absl::Now();
  const int register_failures =
      relay::bench::RegisterFleet(agents, address, root, token, absl::GetFlag(FLAGS_callers));
  absl::Duration registered_in = absl::Now() - start;

  // 2. Connect every agent over its own mTLS connection.
  std::atomic<int> connected{0};
  absl::Mutex rtt_mu;
  std::vector<double> rtts;
  absl::Duration interval;
  (void)absl::ParseDuration(absl::GetFlag(FLAGS_heartbeat_interval), &interval);
  std::atomic<int> created{0};
  std::atomic<bool> record_heartbeats{false};
  std::atomic<bool> stop_heartbeats{false};
  // Every agent once per interval, spread over the interval.
  std::thread heartbeats([&] {
    relay::bench::PaceHeartbeats([&](int i) { return std::atomic_load(&agents[i].stream); },
                                 [&] { return created.load(); }, interval, stop_heartbeats, record_heartbeats);
  });
  // A channel of its own (one TCP + TLS connection) with the agent's channel arguments.
  // The agent makes a new channel for every stream it runs; here each agent keeps its
  // channel and opens every later stream on it, which the server sees the same way (a
  // stream on a new connection after a restart: gRPC reconnects the channel, with a full
  // handshake).
  auto open_channel = [&](Agent& agent) { relay::bench::OpenAgentChannel(agent, address, root); };
  auto open_stream = [&](Agent& agent) {
    std::atomic_store(&agent.stream,
                      std::make_shared<AgentStream>(agent.relay.get(), agent.cluster, &connected, &rtt_mu, &rtts));
  };
  // CPU seconds (server, load) a phase used.
  struct CpuSplit {
    double server = 0, load = 0;
  };
  double server_cpu_mark = 0, load_cpu_mark = 0;
  auto mark_cpu = [&] {
    server_cpu_mark = CpuSeconds(server);
    load_cpu_mark = CpuSeconds(0);
  };
  auto cpu_since_mark = [&] { return CpuSplit{CpuSeconds(server) - server_cpu_mark, CpuSeconds(0) - load_cpu_mark}; };
  mark_cpu();
  start = absl::Now();
  for (Agent& agent : agents) {
    open_channel(agent);
    open_stream(agent);
    created++;
  }
  absl::Time deadline = absl::Now() + absl::Seconds(180);
  while (connected < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  absl::Duration connected_in = absl::Now() - start;
  CpuSplit connect_cpu = cpu_since_mark();
  int connected_count = connected;
  double rss_connected = RssMiB(server);

  // 3. Heartbeats are already flowing (the server closes a stream silent for three
  //    intervals); now record their round trips for the window.
  record_heartbeats = true;
  absl::SleepFor(window);
  record_heartbeats = false;
  std::vector<double> heartbeat_rtts;
  {
    absl::MutexLock lock(&rtt_mu);
    heartbeat_rtts = rtts;
  }

  if (absl::GetFlag(FLAGS_soak) > absl::ZeroDuration()) {
    const int failures = Soak(agents, server, dir + "/mgmt/admin.sock");
    stop_heartbeats = true;
    heartbeats.join();
    for (Agent& agent : agents) std::atomic_load(&agent.stream)->Cancel();
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    std::filesystem::remove_all(dir);
    std::printf("agents %d (registration failures %d), connected %d of %d in %.1f s, heartbeat p99 %.2f ms\n", n,
                register_failures, connected_count, n, absl::ToDoubleSeconds(connected_in),
                Percentile(heartbeat_rtts, 0.99));
    return failures == 0 && register_failures == 0 ? 0 : 1;
  }

  // 4. Rotation storm: every agent renews over its own connection.
  std::atomic<int> renew_failures{0};
  std::vector<std::string> csrs(n);
  Parallel(2, n, [&](int i) {
    auto key = relay::pki::GenerateKey();
    csrs[i] = *relay::pki::CreateCsrPem(key->get(), agents[i].cluster);
  });
  mark_cpu();
  start = absl::Now();
  Parallel(absl::GetFlag(FLAGS_callers), n, [&](int i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::RenewRequest request;
    request.set_csr_pem(csrs[i]);
    v1::CertificateResponse response;
    if (!agents[i].registration->Renew(&context, request, &response).ok()) renew_failures++;
  });
  absl::Duration renewed_in = absl::Now() - start;
  CpuSplit renew_cpu = cpu_since_mark();
  int still_connected = connected;

  // 5. Reconnect storm: restart the server; every agent reconnects as the agent does: at
  //    once after losing a stream it had been welcomed on, then after full-jitter
  //    exponential backoff (AgentOptions' 200 ms doubling up to 30 s).
  std::atomic<bool> stop_reconnects{false};
  std::atomic<int> stream_attempts{0};
  std::thread reconnects([&] {
    const relay::agent::AgentOptions agent_defaults;
    relay::bench::Reconnects reconnecting(n, 7, agent_defaults.initial_backoff, agent_defaults.max_backoff);
    while (!stop_reconnects) {
      stream_attempts += reconnecting.Pass(
          absl::Now(), [&](int i) { return std::atomic_load(&agents[i].stream); },
          [&](int i) { open_stream(agents[i]); });
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  std::string port = address.substr(address.rfind(':') + 1);
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  absl::Time restarted = absl::Now();
  std::string again = start_server(port, &server);
  absl::Duration server_start = absl::Now() - restarted;
  mark_cpu();
  int back = 0;
  absl::Duration back_in = absl::InfiniteDuration();
  if (again.empty()) {
    std::cerr << "server did not restart:\n" << ReadFile(log);
  } else {
    deadline = absl::Now() + absl::Seconds(90);
    while (connected < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
    back = connected;
    if (back == n) back_in = absl::Now() - restarted;
  }
  CpuSplit reconnect_cpu = cpu_since_mark();
  stop_reconnects = true;
  reconnects.join();
  stop_heartbeats = true;
  heartbeats.join();

  for (Agent& agent : agents) std::atomic_load(&agent.stream)->Cancel();
  deadline = absl::Now() + absl::Seconds(20);
  for (Agent& agent : agents) {
    while (!std::atomic_load(&agent.stream)->finished() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  std::filesystem::remove_all(dir);

  std::printf("agents                        %d (registration failures %d; server on CPU 0, load on CPUs %s)\n", n,
              register_failures, absl::GetFlag(FLAGS_load_cpus).c_str());
  std::printf("registered in                 %.1f s (%.0f/s, %d callers, keys made by the load process)\n",
              absl::ToDoubleSeconds(registered_in), n / absl::ToDoubleSeconds(registered_in),
              absl::GetFlag(FLAGS_callers));
  std::printf("connected                     %d of %d in %.1f s (CPU: server %.1f s, load %.1f s)\n",
              connected_count, n, absl::ToDoubleSeconds(connected_in), connect_cpu.server, connect_cpu.load);
  std::printf("server RSS                    %.0f MiB idle, %.0f MiB with all connected: %.1f KiB per agent\n",
              rss_idle, rss_connected, (rss_connected - rss_idle) * 1024 / std::max(connected_count, 1));
  std::printf("heartbeat round trip          p50 %.2f ms, p99 %.2f ms (%zu samples, interval %s)\n",
              Percentile(heartbeat_rtts, 0.5), Percentile(heartbeat_rtts, 0.99), heartbeat_rtts.size(),
              absl::GetFlag(FLAGS_heartbeat_interval).c_str());
  std::printf("rotation storm                %d renewals in %.1f s (%.0f/s), %d failures, %d streams still up "
              "(CPU: server %.1f s, load %.1f s)\n",
              n, absl::ToDoubleSeconds(renewed_in), n / absl::ToDoubleSeconds(renewed_in),
              renew_failures.load(), still_connected, renew_cpu.server, renew_cpu.load);
  std::printf("reconnect storm               %d of %d back %s after the server restarted (server ready in %.1f s; "
              "CPU after: server %.1f s, load %.1f s; %d stream attempts)\n",
              back, n,
              back == n ? absl::StrCat("within ", absl::FormatDuration(back_in)).c_str() : "(not all, 90 s)",
              absl::ToDoubleSeconds(server_start), reconnect_cpu.server, reconnect_cpu.load,
              stream_attempts.load());
  return 0;
}
