#ifndef RELAY_TOOLS_BENCH_FLEET_H_
#define RELAY_TOOLS_BENCH_FLEET_H_

// Simulated agents for the fleet benchmarks (agents.cc, replicas.cc): each with its own
// key, certificate, channel and relay stream, on gRPC's callback API (no thread per
// agent).

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/backoff.h"
#include "common/grpc_tls.h"
#include "config/values.h"
#include "grpcpp/grpcpp.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "tools/bench/bench_util.h"

namespace relay::bench {

namespace v1 = ::relay::v1;

inline double RssMiB(pid_t pid) {
  for (absl::string_view line : absl::StrSplit(ReadFile(absl::StrCat("/proc/", pid, "/status")), '\n')) {
    if (absl::StartsWith(line, "VmRSS:")) {
      double kib = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() >= 2 && absl::SimpleAtod(parts[1], &kib)) return kib / 1024;
    }
  }
  return 0;
}

// One agent's relay stream, on gRPC's callback API (no thread per agent).
class AgentStream : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ServerMessage> {
 public:
  // Messages other than Welcome and HeartbeatAck go to `on_message` (on a gRPC thread;
  // it may Send), when given.
  using OnMessage = std::function<void(AgentStream&, const v1::ServerMessage&)>;
  AgentStream(v1::Relay::Stub* stub, std::string cluster, std::atomic<int>* connected,
              absl::Mutex* rtt_mu, std::vector<double>* rtts, OnMessage on_message = nullptr)
      : cluster_(std::move(cluster)),
        connected_(connected),
        rtt_mu_(rtt_mu),
        rtts_(rtts),
        on_message_(std::move(on_message)) {
    stub->async()->Connect(&context_, this);
    v1::AgentMessage hello;
    hello.mutable_hello()->set_cluster(cluster_);
    Send(std::move(hello));
    StartRead(&incoming_);
    StartCall();
  }

  void Heartbeat(bool record) {
    record_ = record;
    v1::AgentMessage beat;
    beat.mutable_heartbeat()->set_sent_unix_nanos(absl::ToUnixNanos(absl::Now()));
    Send(std::move(beat));
  }

  void Send(v1::AgentMessage message) {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    queue_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (!ok || queue_.empty()) {
      writing_ = false;
      return;
    }
    StartWrite(&queue_.front());
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (incoming_.has_welcome() && !welcomed_.exchange(true)) connected_->fetch_add(1);
    if (incoming_.has_heartbeat_ack() && record_) {
      double ms = absl::ToDoubleMilliseconds(
          absl::Now() - absl::FromUnixNanos(incoming_.heartbeat_ack().sent_unix_nanos()));
      absl::MutexLock lock(rtt_mu_);
      rtts_->push_back(ms);
    }
    if (on_message_ && !incoming_.has_welcome() && !incoming_.has_heartbeat_ack()) on_message_(*this, incoming_);
    StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      status_ = status;
    }
    if (welcomed_) connected_->fetch_sub(1);
    finished_ = true;
  }

  void Cancel() { context_.TryCancel(); }
  bool finished() const { return finished_; }
  bool welcomed() const { return welcomed_; }

 private:
  grpc::ClientContext context_;
  std::string cluster_;
  std::atomic<int>* connected_;
  absl::Mutex* rtt_mu_;
  std::vector<double>* rtts_;
  OnMessage on_message_;
  v1::ServerMessage incoming_;
  std::atomic<bool> welcomed_{false};
  std::atomic<bool> record_{false};
  std::atomic<bool> finished_{false};
  absl::Mutex mu_;
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

struct Agent {
  std::string cluster;
  std::string key_pem;
  std::string chain_pem;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Relay::Stub> relay;
  std::unique_ptr<v1::Registration::Stub> registration;
  std::shared_ptr<AgentStream> stream;  // replaced on reconnect; read with std::atomic_load
};

// Sends every stream a heartbeat once per `interval`, spread over it, until `stop`
// (the server closes a stream silent for three intervals). `stream_of(i)` for i below
// `count()` (which may grow while it runs).
template <typename StreamOf, typename Count>
void PaceHeartbeats(StreamOf stream_of, Count count, absl::Duration interval, const std::atomic<bool>& stop,
                    const std::atomic<bool>& record) {
  while (!stop) {
    const absl::Time round = absl::Now();
    const int live = count();
    for (int i = 0; i < live && !stop; ++i) {
      stream_of(i)->Heartbeat(record);
      if (i % 100 == 99) {
        absl::Time due = round + interval * (static_cast<double>(i + 1) / live);
        if (due > absl::Now()) absl::SleepFor(due - absl::Now());
      }
    }
    while (absl::Now() < round + interval && !stop) absl::SleepFor(absl::Milliseconds(20));
  }
}

template <typename Work>
void Parallel(int callers, int total, Work work) {
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next++) < total;) work(i);
    });
  }
  for (auto& thread : threads) thread.join();
}

// Registers agents "agent-0" .. with keys made here, `callers` at a time, with the shared
// token; fills each Agent's cluster, key and chain. How many registrations failed.
inline int RegisterFleet(std::vector<Agent>& agents, const std::string& address, const std::string& root,
                         const std::string& token, int callers) {
  std::atomic<int> failures{0};
  auto stub = v1::Registration::NewStub(relay::grpc_tls::CreateChannel(
      address, relay::grpc_tls::ServerAuthCredentials(root), relay::config::kDefaultAuthority));
  Parallel(callers, static_cast<int>(agents.size()), [&](int i) {
    Agent& agent = agents[i];
    agent.cluster = absl::StrCat("agent-", i);
    auto key = relay::pki::GenerateKey();
    agent.key_pem = *relay::pki::PrivateKeyToPem(key->get());
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    v1::RegisterRequest request;
    request.set_cluster(agent.cluster);
    request.set_csr_pem(*relay::pki::CreateCsrPem(key->get(), agent.cluster));
    v1::CertificateResponse response;
    if (!stub->Register(&context, request, &response).ok()) failures++;
    agent.chain_pem = response.certificate_chain_pem();
  });
  return failures;
}

// A channel of the agent's own (one TCP + TLS connection) with the agent's channel
// arguments, and its stubs.
inline void OpenAgentChannel(Agent& agent, const std::string& target, const std::string& root) {
  grpc::ChannelArguments channel_args = relay::grpc_tls::AgentChannelArguments(relay::config::kDefaultAuthority);
  channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
  agent.channel = grpc::CreateCustomChannel(
      target, relay::grpc_tls::MutualTlsCredentials(root, agent.key_pem, agent.chain_pem), channel_args);
  agent.relay = v1::Relay::NewStub(agent.channel);
  agent.registration = v1::Registration::NewStub(agent.channel);
}

inline double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(values.size() * p))];
}

// Opens finished streams again as the agent does: at once after losing a stream it had
// been welcomed on, then after full-jitter exponential backoff between `initial` and
// `max` (AgentOptions' defaults in the benchmarks).
class Reconnects {
 public:
  Reconnects(int agents, uint32_t seed, absl::Duration initial, absl::Duration max)
      : rng_(seed), initial_(initial), max_(max), retry_at_(agents, absl::InfinitePast()), attempts_(agents, 0) {}

  // One pass over the agents: `reopen(i)` for each whose stream (`stream_of(i)`) has
  // finished and whose wait is over. Returns how many were reopened.
  template <typename StreamOf, typename Reopen>
  int Pass(absl::Time now, StreamOf stream_of, Reopen reopen) {
    int reopened = 0;
    for (size_t i = 0; i < retry_at_.size(); ++i) {
      std::shared_ptr<AgentStream> stream = stream_of(i);
      if (!stream->finished()) continue;
      if (retry_at_[i] == absl::InfinitePast()) {
        if (stream->welcomed()) attempts_[i] = 0;
        absl::Duration wait =
            attempts_[i] == 0
                ? absl::ZeroDuration()
                : FullJitterBackoff(attempts_[i], initial_, max_, std::uniform_real_distribution<double>(0, 1)(rng_));
        attempts_[i]++;
        retry_at_[i] = now + wait;
      }
      if (now >= retry_at_[i]) {
        retry_at_[i] = absl::InfinitePast();
        reopen(i);
        reopened++;
      }
    }
    return reopened;
  }

 private:
  std::mt19937 rng_;
  const absl::Duration initial_;
  const absl::Duration max_;
  std::vector<absl::Time> retry_at_;
  std::vector<int> attempts_;
};

}  // namespace relay::bench

#endif  // RELAY_TOOLS_BENCH_FLEET_H_
