// High-availability benchmark: a 3-member etcd, 3 management-server replicas on it, and
// N agents (default 10,000) from several load processes, each agent with its own key,
// certificate, mTLS connection and relay stream, knowing every replica (a shuffled
// address list, as --server_address=a,b,c gives the agent). Once all are connected, the
// replica holding the most is killed with SIGKILL; reports how long until every agent
// is connected again and how many registered again (goal: all back within 10 s, zero
// re-registrations), with each process's CPU and memory. All on 127.0.0.1, bounded,
// stops by itself.
//
//   tools/bazel run -c opt //tools/bench:replicas -- [--agents=10000] [--load_processes=0]
//
// File descriptors: each process here may hold 20,000, so one load process carries up to
// ~19,000 agents; --load_processes=0 gives each about 8,000. The load processes are this
// binary again (--worker_index); the root certificate and token reach them in files,
// never on a command line.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/backoff.h"
#include "common/flags.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "httplib.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/fleet.h"

ABSL_FLAG(int, agents, 10000, "Number of agents, spread over the load processes.");
ABSL_FLAG(int, replicas, 3, "Management-server replicas.");
ABSL_FLAG(int, etcd_members, 3, "etcd members (Debian's etcd-server; `etcd` on PATH).");
ABSL_FLAG(int, load_processes, 0, "Load processes carrying the agents; 0: one per 8,000 agents.");
ABSL_FLAG(int, callers, 16, "Concurrent Register callers per load process.");
ABSL_FLAG(std::string, heartbeat_interval, "5s", "Server --heartbeat_interval (agents follow it).");
ABSL_FLAG(std::string, server, "mgmt/server", "Path of the management server binary.");
// Internal: the load processes.
ABSL_FLAG(int, worker_index, -1, "(internal) this process is load process N.");
ABSL_FLAG(int, worker_first, 0, "(internal) first agent of this load process.");
ABSL_FLAG(int, worker_count, 0, "(internal) agents of this load process.");
ABSL_FLAG(std::string, worker_dir, "", "(internal) the run's directory.");
ABSL_FLAG(std::string, worker_servers, "", "(internal) the replicas' addresses, comma-separated.");

namespace {

namespace v1 = ::relay::v1;
using ::relay::bench::Agent;
using ::relay::bench::AgentStream;
using ::relay::bench::CpuSeconds;
using ::relay::bench::Parallel;
using ::relay::bench::ReadFile;
using ::relay::bench::RssMiB;
using ::relay::bench::Spawn;

constexpr const char* kAuthority = ::relay::config::kDefaultAuthority;
constexpr int kOpening = 200;

void WriteFileAtomically(const std::string& path, const std::string& contents) {
  {
    std::ofstream out(path + ".tmp", std::ios::trunc);
    out << contents;
  }
  std::filesystem::rename(path + ".tmp", path);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// `key value` lines.
std::map<std::string, double> ReadCounters(const std::string& path) {
  std::map<std::string, double> counters;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    double value = 0;
    if (parts.size() == 2 && absl::SimpleAtod(parts[1], &value)) counters[parts[0]] = value;
  }
  return counters;
}

// ---------------------------------------------------------------------------------
// A load process: registers its agents, connects them, heartbeats, reconnects as the
// agent does, and writes its counters to <dir>/worker.<i> every 100 ms until <dir>/stop.
int RunWorker() {
  const std::string dir = absl::GetFlag(FLAGS_worker_dir);
  const int index = absl::GetFlag(FLAGS_worker_index);
  const int first = absl::GetFlag(FLAGS_worker_first);
  const int n = absl::GetFlag(FLAGS_worker_count);
  const std::string servers = absl::GetFlag(FLAGS_worker_servers);
  const std::string root = ReadFile(dir + "/root.pem");
  const std::string token = ReadFile(dir + "/token");
  relay::RaiseOpenFileLimit();
  absl::Duration interval;
  (void)absl::ParseDuration(absl::GetFlag(FLAGS_heartbeat_interval), &interval);

  std::vector<Agent> agents(n);
  std::atomic<int> registered{0}, register_failures{0}, connected{0}, stream_attempts{0}, created{0};
  std::atomic<bool> stop{false};
  absl::Mutex rtt_mu;
  std::vector<double> rtts;  // not recorded here
  std::thread status([&] {
    const std::string path = absl::StrCat(dir, "/worker.", index);
    while (!stop) {
      WriteFileAtomically(path, absl::StrCat("registered ", registered.load(), "\nregister_failures ",
                                             register_failures.load(), "\nconnected ", connected.load(),
                                             "\nstream_attempts ", stream_attempts.load(), "\n"));
      absl::SleepFor(absl::Milliseconds(100));
      if (std::filesystem::exists(dir + "/stop")) stop = true;
    }
  });

  // 1. Register, through the replicas (one channel; it fails over like the agent's).
  auto register_stub = v1::Registration::NewStub(
      relay::grpc_tls::CreateChannel(servers, relay::grpc_tls::ServerAuthCredentials(root), kAuthority));
  Parallel(absl::GetFlag(FLAGS_callers), n, [&](int i) {
    Agent& agent = agents[i];
    agent.cluster = absl::StrCat("agent-", first + i);
    auto key = relay::pki::GenerateKey();
    agent.key_pem = *relay::pki::PrivateKeyToPem(key->get());
    v1::RegisterRequest request;
    request.set_cluster(agent.cluster);
    request.set_csr_pem(*relay::pki::CreateCsrPem(key->get(), agent.cluster));
    for (int attempt = 0; attempt < 5; ++attempt) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", "Bearer " + token);
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      v1::CertificateResponse response;
      grpc::Status status = register_stub->Register(&context, request, &response);
      if (status.ok()) {
        agent.chain_pem = response.certificate_chain_pem();
        registered++;
        return;
      }
      absl::SleepFor(absl::Milliseconds(500));
    }
    register_failures++;
  });

  // 2. Every agent on a channel of its own to the shuffled replica list.
  auto open_stream = [&](Agent& agent) {
    std::atomic_store(&agent.stream,
                      std::make_shared<AgentStream>(agent.relay.get(), agent.cluster, &connected, &rtt_mu, &rtts));
  };
  std::vector<Agent*> opening;  // streams neither welcomed nor finished yet
  for (Agent& agent : agents) {
    if (agent.chain_pem.empty()) continue;
    grpc::ChannelArguments channel_args = relay::grpc_tls::AgentChannelArguments(kAuthority);
    channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    agent.channel = grpc::CreateCustomChannel(relay::grpc_tls::ChannelTarget(servers),
                                              relay::grpc_tls::MutualTlsCredentials(root, agent.key_pem,
                                                                                    agent.chain_pem),
                                              channel_args);
    agent.relay = v1::Relay::NewStub(agent.channel);
    // At most kOpening handshakes under way per load process: all at once, on a machine
    // shared with the servers, would starve them past their handshake timeout.
    while (true) {
      opening.erase(std::remove_if(opening.begin(), opening.end(),
                                   [](Agent* a) { return a->stream->welcomed() || a->stream->finished(); }),
                    opening.end());
      if (static_cast<int>(opening.size()) < kOpening) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    open_stream(agent);
    opening.push_back(&agent);
    created++;
  }
  const int live = created;
  std::vector<Agent*> running;
  for (Agent& agent : agents) {
    if (agent.stream) running.push_back(&agent);
  }
  // Heartbeats, every agent once per interval, spread over it.
  const std::atomic<bool> record{false};
  std::thread heartbeats([&] {
    relay::bench::PaceHeartbeats([&](int i) { return std::atomic_load(&running[i]->stream); },
                                 [&] { return live; }, interval, stop, record);
  });
  // Reconnects as the agent does: at once after losing a stream it had been welcomed
  // on, then full-jitter exponential backoff (AgentOptions' defaults).
  const relay::agent::AgentOptions agent_defaults;
  relay::bench::Reconnects reconnecting(live, index, agent_defaults.initial_backoff, agent_defaults.max_backoff);
  while (!stop) {
    stream_attempts += reconnecting.Pass(
        absl::Now(), [&](int i) { return std::atomic_load(&running[i]->stream); },
        [&](int i) { open_stream(*running[i]); });
    absl::SleepFor(absl::Milliseconds(20));
  }
  heartbeats.join();
  status.join();
  for (Agent* agent : running) std::atomic_load(&agent->stream)->Cancel();
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (Agent* agent : running) {
    while (!std::atomic_load(&agent->stream)->finished() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------
// The coordinator.

struct Replica {
  pid_t pid = -1;
  std::string address;
  int metrics_port = 0;
  bool alive = true;
};

std::string Metrics(const Replica& replica) {
  httplib::Client client("127.0.0.1", replica.metrics_port);
  client.set_read_timeout(10, 0);
  auto response = client.Get("/metrics");
  return response && response->status == 200 ? response->body : "";
}

int CountConnected(const std::string& metrics) {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, "relay_push_clients_connected{") && absl::EndsWith(line, "} 1")) count++;
  }
  return count;
}

double SeriesValue(const std::string& metrics, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, series) && line.size() > series.size() && line[series.size()] == ' ') {
      double value = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return 0;
}

template <typename Condition>
bool WaitUntil(Condition condition, absl::Duration timeout, absl::Duration poll = absl::Milliseconds(50)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(poll);
  }
  return true;
}

int RunCoordinator() {
  const int n = absl::GetFlag(FLAGS_agents);
  const int replica_count = absl::GetFlag(FLAGS_replicas);
  const int member_count = absl::GetFlag(FLAGS_etcd_members);
  int workers = absl::GetFlag(FLAGS_load_processes);
  if (workers <= 0) workers = std::max(1, (n + 7999) / 8000);
  if (n <= 0 || replica_count < 2 || member_count < 1 || n / workers > 19000) {
    std::cerr << "need --agents > 0, --replicas >= 2, --etcd_members >= 1 and at most 19,000 agents per load "
                 "process (--load_processes)\n";
    return 2;
  }
  relay::RaiseOpenFileLimit();
  const std::string dir = absl::StrCat("/tmp/relay-bench-replicas.", getpid());
  std::filesystem::create_directories(dir);
  std::vector<pid_t> etcd;
  std::vector<Replica> replicas(replica_count);
  std::vector<pid_t> loads;
  auto cleanup = [&] {
    WriteFileAtomically(dir + "/stop", "");
    for (pid_t load : loads) {
      for (int i = 0; i < 300 && waitpid(load, nullptr, WNOHANG) == 0; ++i) absl::SleepFor(absl::Milliseconds(100));
      kill(load, SIGKILL);
      waitpid(load, nullptr, 0);
    }
    for (Replica& replica : replicas) {
      if (replica.pid > 0 && replica.alive) {
        kill(replica.pid, SIGTERM);
        waitpid(replica.pid, nullptr, 0);
      }
    }
    for (pid_t member : etcd) {
      kill(member, SIGTERM);
      waitpid(member, nullptr, 0);
    }
    std::filesystem::remove_all(dir);
  };

  // 1. etcd.
  std::vector<int> client_ports, peer_ports;
  std::vector<std::string> peers, endpoints;
  for (int m = 0; m < member_count; ++m) {
    client_ports.push_back(FreePort());
    peer_ports.push_back(FreePort());
    peers.push_back(absl::StrCat("m", m, "=http://127.0.0.1:", peer_ports[m]));
    endpoints.push_back(absl::StrCat("127.0.0.1:", client_ports[m]));
  }
  for (int m = 0; m < member_count; ++m) {
    std::string client_url = absl::StrCat("http://127.0.0.1:", client_ports[m]);
    std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_ports[m]);
    etcd.push_back(Spawn({"etcd", absl::StrCat("--name=m", m), absl::StrCat("--data-dir=", dir, "/etcd", m),
                          "--listen-client-urls=" + client_url, "--advertise-client-urls=" + client_url,
                          "--listen-peer-urls=" + peer_url, "--initial-advertise-peer-urls=" + peer_url,
                          "--initial-cluster=" + absl::StrJoin(peers, ","), "--initial-cluster-state=new",
                          "--log-level=warn"},
                         absl::StrCat(dir, "/etcd", m, ".log")));
  }
  bool etcd_up = WaitUntil(
      [&] {
        for (int port : client_ports) {
          httplib::Client client("127.0.0.1", port);
          auto health = client.Get("/health");
          if (!health || !absl::StrContains(health->body, "\"true\"")) return false;
        }
        return true;
      },
      absl::Seconds(60), absl::Milliseconds(200));
  if (!etcd_up) {
    std::cerr << "etcd did not start (Debian's etcd-server; tools/bazel installs it):\n" << ReadFile(dir + "/etcd0.log");
    cleanup();
    return 1;
  }

  // 2. Replicas: the first makes the PKI, the others load it.
  WriteFileAtomically(dir + "/state.key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n");
  auto start_replica = [&](int r) {
    std::string ready_file = absl::StrCat(dir, "/ready.", r);
    std::filesystem::remove(ready_file);
    replicas[r].pid = Spawn({absl::GetFlag(FLAGS_server), absl::StrCat("--secrets_dir=", dir, "/replica", r),
                             "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                             "--registrations_per_second_per_source=0",  // one source: 127.0.0.1
                             "--health_address=127.0.0.1:0", "--ready_file=" + ready_file, "--log_level=warning",
                             "--heartbeat_interval=" + absl::GetFlag(FLAGS_heartbeat_interval), "--state=etcd",
                             "--etcd_endpoints=" + absl::StrJoin(endpoints, ","),
                             "--state_encryption_key_file=" + dir + "/state.key"},
                            absl::StrCat(dir, "/replica", r, ".log"));
    WaitUntil([&] { return !ReadFile(ready_file).empty(); }, absl::Seconds(60));
    std::string ready = ReadFile(ready_file);
    replicas[r].address = relay::bench::AddressFromReadyFile(ready);
    size_t at = ready.find("metrics_port=");
    if (at != std::string::npos) (void)absl::SimpleAtoi(ready.substr(at + 13, ready.find('\n', at) - at - 13), &replicas[r].metrics_port);
    return !replicas[r].address.empty();
  };
  for (int r = 0; r < replica_count; ++r) {
    if (!start_replica(r)) {
      std::cerr << "replica " << r << " did not start:\n" << ReadFile(absl::StrCat(dir, "/replica", r, ".log"));
      cleanup();
      return 1;
    }
  }
  std::vector<std::string> addresses;
  for (const Replica& replica : replicas) addresses.push_back(replica.address);
  const std::string secrets = dir + "/replica0/gloo-mesh/";
  WriteFileAtomically(dir + "/root.pem", ReadFile(secrets + "relay-root-tls-secret/ca.crt"));
  WriteFileAtomically(dir + "/token", ReadFile(secrets + "relay-identity-token-secret/token"));
  std::filesystem::permissions(dir + "/token", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  // 3. Load processes.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  absl::Time start = absl::Now();
  for (int w = 0; w < workers; ++w) {
    int first = static_cast<int>(static_cast<int64_t>(n) * w / workers);
    int last = static_cast<int>(static_cast<int64_t>(n) * (w + 1) / workers);
    loads.push_back(Spawn({self, absl::StrCat("--worker_index=", w), absl::StrCat("--worker_first=", first),
                           absl::StrCat("--worker_count=", last - first), "--worker_dir=" + dir,
                           "--worker_servers=" + absl::StrJoin(addresses, ","),
                           absl::StrCat("--callers=", absl::GetFlag(FLAGS_callers)),
                           "--heartbeat_interval=" + absl::GetFlag(FLAGS_heartbeat_interval)},
                          absl::StrCat(dir, "/load", w, ".log")));
  }
  auto total = [&](const std::string& counter) {
    double sum = 0;
    for (int w = 0; w < workers; ++w) sum += ReadCounters(absl::StrCat(dir, "/worker.", w))[counter];
    return static_cast<int>(sum);
  };
  WaitUntil([&] { return total("registered") + total("register_failures") == n; }, absl::Seconds(900),
            absl::Milliseconds(200));
  absl::Duration registered_in = absl::Now() - start;
  const int registered = total("registered");
  start = absl::Now();
  WaitUntil([&] { return total("connected") == registered; }, absl::Seconds(600), absl::Milliseconds(100));
  absl::Duration connected_in = absl::Now() - start;
  const int connected = total("connected");
  absl::SleepFor(absl::Seconds(5));  // the replicas' connection records settle

  // 4. Kill the replica holding the most.
  std::vector<int> held(replica_count);
  std::vector<double> registers_before(replica_count), rss(replica_count), cpu(replica_count);
  int victim = 0;
  for (int r = 0; r < replica_count; ++r) {
    std::string metrics = Metrics(replicas[r]);
    held[r] = CountConnected(metrics);
    registers_before[r] = SeriesValue(metrics, "relay_certificates_issued_total{kind=\"register\"}");
    rss[r] = RssMiB(replicas[r].pid);
    cpu[r] = CpuSeconds(replicas[r].pid);
    if (held[r] > held[victim]) victim = r;
  }
  double etcd_rss = 0, etcd_cpu = 0;
  for (pid_t member : etcd) {
    etcd_rss += RssMiB(member);
    etcd_cpu += CpuSeconds(member);
  }
  const int attempts_before = total("stream_attempts");
  // CPU seconds each kind of process spends from the kill until all are back.
  auto cpu_of = [&](const std::vector<pid_t>& pids) {
    double sum = 0;
    for (pid_t pid : pids) sum += CpuSeconds(pid);
    return sum;
  };
  std::vector<pid_t> survivors;
  for (int r = 0; r < replica_count; ++r) {
    if (r != victim) survivors.push_back(replicas[r].pid);
  }
  const double survivors_cpu_before = cpu_of(survivors), etcd_cpu_before = cpu_of(etcd),
               loads_cpu_before = cpu_of(loads);
  kill(replicas[victim].pid, SIGKILL);
  waitpid(replicas[victim].pid, nullptr, 0);
  replicas[victim].alive = false;
  const absl::Time killed = absl::Now();
  WaitUntil([&] { return total("connected") < connected; }, absl::Seconds(5), absl::Milliseconds(10));
  const int lowest = total("connected");
  bool back = WaitUntil([&] { return total("connected") == connected; }, absl::Seconds(300), absl::Milliseconds(20));
  absl::Duration back_in = absl::Now() - killed;
  const double survivors_cpu = cpu_of(survivors) - survivors_cpu_before, etcd_cpu_back = cpu_of(etcd) - etcd_cpu_before,
               loads_cpu = cpu_of(loads) - loads_cpu_before;
  // What the surviving replicas say: everyone connected, nobody registered again.
  int served = 0;
  double registers_after = 0;
  WaitUntil(
      [&] {
        served = 0;
        registers_after = 0;
        for (int r = 0; r < replica_count; ++r) {
          if (!replicas[r].alive) continue;
          std::string metrics = Metrics(replicas[r]);
          served += CountConnected(metrics);
          registers_after += SeriesValue(metrics, "relay_certificates_issued_total{kind=\"register\"}") -
                             registers_before[r];
        }
        return served == connected;
      },
      absl::Seconds(30), absl::Milliseconds(500));
  const int attempts_after = total("stream_attempts") - attempts_before;
  const int connected_at_end = total("connected");
  cleanup();

  std::printf("setup                         %d etcd members, %d replicas, %d load processes, %d agents\n",
              member_count, replica_count, workers, n);
  std::printf("registered                    %d of %d in %.1f s (%.0f/s through the replicas)\n", registered, n,
              absl::ToDoubleSeconds(registered_in), registered / absl::ToDoubleSeconds(registered_in));
  std::printf("connected                     %d in %.1f s, per replica: %s\n", connected,
              absl::ToDoubleSeconds(connected_in), absl::StrJoin(held, " / ").c_str());
  for (int r = 0; r < replica_count; ++r) {
    std::printf("replica %d                     RSS %.0f MiB, CPU %.1f s so far%s\n", r, rss[r], cpu[r],
                r == victim ? " (killed)" : "");
  }
  std::printf("etcd (all members)            RSS %.0f MiB, CPU %.1f s so far\n", etcd_rss, etcd_cpu);
  std::printf("kill -9 of replica %d          at least %d agents lost their stream (connected fell to %d)\n", victim,
              connected - lowest, lowest);
  std::printf("back                          %s (%d stream attempts)\n",
              back ? absl::StrCat("all ", connected, " connected again within ",
                                  absl::FormatDuration(back_in)).c_str()
                   : absl::StrCat("NOT all within 300 s: ", connected_at_end, " of ", connected).c_str(),
              attempts_after);
  std::printf("CPU until back                surviving replicas %.1f s, etcd %.1f s, load processes %.1f s "
              "(%.1f ms per returning agent in all)\n",
              survivors_cpu, etcd_cpu_back, loads_cpu,
              (survivors_cpu + etcd_cpu_back + loads_cpu) * 1000 / std::max(held[victim], 1));
  std::printf("surviving replicas            serve %d streams; %.0f registrations since the kill "
              "(goal: 0)\n",
              served, registers_after);
  return back && served == connected && registers_after == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage("relay-bench-replicas",
                  "relay HA benchmark (see the comment at the top of tools/bench/replicas.cc)");
  relay::ParseFlags(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (absl::GetFlag(FLAGS_worker_index) >= 0) return RunWorker();
  return RunCoordinator();
}
