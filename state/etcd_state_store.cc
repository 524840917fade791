#include "state/etcd_state_store.h"

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/work_queue.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "state/etcd_value.pb.h"
#include "state/watch_list.h"

namespace relay::state {
namespace {

namespace pb = ::etcdserverpb;

constexpr char kRecords[] = "r/";
constexpr char kSecrets[] = "s/";

// The first key after every key that starts with `prefix`: etcd's range_end for a
// prefix.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the etcd ", what, " file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The etcd members, one channel each. Calls go to the current one; a call that cannot
// reach it moves the next call to the next member.
class Members {
 public:
  static absl::StatusOr<std::unique_ptr<Members>> Connect(const EtcdOptions& options) {
    if (options.endpoints.empty()) {
      return absl::InvalidArgumentError("no etcd endpoints: give --etcd_endpoints=host:port[,host:port...]");
    }
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (!options.ca_file.empty()) {
      grpc::SslCredentialsOptions tls;
      ASSIGN_OR_RETURN(tls.pem_root_certs, ReadFile(options.ca_file, "CA"));
      if (!options.cert_file.empty() || !options.key_file.empty()) {
        ASSIGN_OR_RETURN(tls.pem_cert_chain, ReadFile(options.cert_file, "client certificate"));
        ASSIGN_OR_RETURN(tls.pem_private_key, ReadFile(options.key_file, "client key"));
      }
      credentials = grpc::SslCredentials(tls);
    }
    auto members = std::unique_ptr<Members>(new Members);
    for (const std::string& endpoint : options.endpoints) {
      Member member;
      member.endpoint = endpoint;
      grpc::ChannelArguments arguments;
      // Calls fail fast while a member is down instead of waiting out the deadline.
      arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
      arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      member.channel = grpc::CreateCustomChannel(endpoint, credentials, arguments);
      member.kv = pb::KV::NewStub(member.channel);
      member.watch = pb::Watch::NewStub(member.channel);
      members->members_.push_back(std::move(member));
    }
    return members;
  }

  struct Member {
    std::string endpoint;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Watch::Stub> watch;
  };

  Member& Current() { return members_[current_.load() % members_.size()]; }
  size_t size() const { return members_.size(); }

  // The current member if its channel is connected or connects; else the next one that
  // does (each given up to `connect_timeout`), which becomes current. So a request is
  // only ever sent to a member that was reachable a moment ago, and a write's outcome is
  // unknown only when a member fails with the request under way, not when it was down
  // before (a killed member is skipped, not written to). The current one when none is.
  Member& Reachable(absl::Duration connect_timeout) {
    for (size_t attempt = 0; attempt < members_.size(); ++attempt) {
      Member& member = Current();
      if (Connects(member, connect_timeout)) return member;
      Failed(member);
    }
    return Current();
  }

  static bool Connects(Member& member, absl::Duration timeout) {
    grpc_connectivity_state state = member.channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return true;
    const auto deadline = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
    while (state != GRPC_CHANNEL_READY) {
      if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
      if (!member.channel->WaitForStateChange(state, deadline)) return false;
      state = member.channel->GetState(/*try_to_connect=*/true);
    }
    return true;
  }

  // `member` failed to answer: the next call goes to the next one.
  void Failed(const Member& member) {
    size_t index = current_.load();
    if (&members_[index % members_.size()] == &member) current_.compare_exchange_strong(index, index + 1);
  }

  std::string Endpoints() const {
    std::vector<std::string> endpoints;
    for (const Member& member : members_) endpoints.push_back(member.endpoint);
    return absl::StrJoin(endpoints, ",");
  }

 private:
  Members() = default;
  std::vector<Member> members_;
  std::atomic<size_t> current_{0};
};

bool Unreachable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// What an operator checks when etcd cannot be reached. gRPC reports a TLS mismatch as
// unreachable too ("Socket closed" for plaintext to a TLS etcd, "Endpoint read failed"
// when etcd refuses the client certificate), so the TLS settings are named as well.
std::string WhatToCheck(const EtcdOptions& options) {
  std::string check = "Check that etcd runs, that --etcd_endpoints names it";
  if (options.ca_file.empty()) {
    return check + ", and, if it serves TLS, give --etcd_ca_file (and --etcd_cert_file and --etcd_key_file "
                   "when it asks for client certificates)";
  }
  if (options.cert_file.empty()) {
    return check + ", that --etcd_ca_file signed its serving certificate, and, if it asks for client "
                   "certificates (--client-cert-auth), give --etcd_cert_file and --etcd_key_file";
  }
  return check + ", that --etcd_ca_file signed its serving certificate, and that the CA etcd trusts "
                 "(its --trusted-ca-file) signed --etcd_cert_file";
}

// An etcd answer in our terms: unreachable is UNAVAILABLE, naming the member and what
// to check; anything else keeps its code.
absl::Status FromEtcd(const grpc::Status& status, const std::string& endpoint, absl::string_view what,
                      const EtcdOptions& options) {
  if (status.ok()) return absl::OkStatus();
  if (Unreachable(status)) {
    return absl::UnavailableError(absl::StrCat("etcd at ", endpoint, " did not answer (", what, "): ",
                                               status.error_message(), ". ", WhatToCheck(options)));
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd at ", endpoint, " refused ", what, ": ", status.error_message()));
}

class EtcdStateStore;

class EtcdSecretStore final : public secrets::SecretStore {
 public:
  explicit EtcdSecretStore(EtcdStateStore* store) : store_(store) {}

  absl::StatusOr<secrets::SecretData> Get(absl::string_view ns, absl::string_view name) override;
  absl::Status Put(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override;
  absl::Status Create(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) override;
  absl::Status Delete(absl::string_view ns, absl::string_view name) override;
  absl::StatusOr<std::vector<std::string>> List(absl::string_view ns) override;
  std::unique_ptr<secrets::SecretWatch> Watch(absl::string_view ns, absl::string_view name,
                                              std::function<void()> on_change) override;

 private:
  EtcdStateStore* const store_;
};

class EtcdStateStore final : public StateStore {
 public:
  EtcdStateStore(EtcdOptions options, std::unique_ptr<Members> members)
      : options_(std::move(options)), members_(std::move(members)), secrets_(this) {}

  ~EtcdStateStore() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (watch_context_) watch_context_->TryCancel();
      // Calls under way finish (or time out) before the store goes.
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
      mu_.Await(absl::Condition(&idle));
    }
    watch_wakeup_.Notify();
    if (watch_thread_.joinable()) watch_thread_.join();
    completions_.Shutdown();
    if (completion_thread_.joinable()) completion_thread_.join();
  }

  // Reads the store's revision, then watches everything under the prefix from the next
  // one: no change made after Open returns is missed.
  absl::Status Start() {
    completion_thread_ = std::thread([this] { CompletionLoop(); });
    pb::RangeResponse response;
    RETURN_IF_ERROR(Range(options_.prefix, PrefixEnd(options_.prefix), /*count_only=*/true, &response));
    watch_from_ = response.header().revision() + 1;
    watch_thread_ = std::thread([this] { WatchLoop(); });
    return absl::OkStatus();
  }

  absl::StatusOr<Record> Get(absl::string_view key) override {
    RETURN_IF_ERROR(ValidateKey(key));
    pb::RangeResponse response;
    RETURN_IF_ERROR(Range(RecordKey(key), "", false, &response));
    if (response.kvs_size() == 0) return absl::NotFoundError(absl::StrCat("no record ", key));
    return Record{response.kvs(0).value(), response.kvs(0).mod_revision()};
  }

  absl::StatusOr<std::map<std::string, Record>> List(absl::string_view prefix) override {
    std::string from = RecordKey(prefix);
    pb::RangeResponse response;
    RETURN_IF_ERROR(Range(from, PrefixEnd(from), false, &response));
    std::map<std::string, Record> records;
    size_t strip = RecordKey("").size();
    for (const auto& kv : response.kvs()) {
      records.emplace(kv.key().substr(strip), Record{kv.value(), kv.mod_revision()});
    }
    return records;
  }

  void CompareAndSet(std::string key, std::optional<std::string> value, int64_t expected_revision,
                     Done done) override {
    absl::Status valid = Precheck(key, value, expected_revision);
    if (!valid.ok()) {
      callbacks_.Post([done = std::move(done), valid]() mutable { std::move(done)(valid); });
      return;
    }
    auto call = std::make_unique<AsyncTxn>();
    call->key = std::move(key);
    call->value = std::move(value);
    call->expected_revision = expected_revision;
    call->request = CompareAndSetTxn(call->key, call->value, expected_revision);
    call->context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(options_.timeout));
    call->member = &members_->Reachable(ConnectTimeout());
    call->done = std::move(done);
    {
      absl::MutexLock lock(&mu_);
      in_flight_++;
    }
    AsyncTxn* started = call.release();  // owned by the completion queue until it answers
    started->reader = started->member->kv->AsyncTxn(&started->context, started->request, &completions_);
    started->reader->Finish(&started->response, &started->status, started);
  }

  absl::StatusOr<int64_t> CompareAndSetAndWait(std::string key, std::optional<std::string> value,
                                               int64_t expected_revision) override {
    RETURN_IF_ERROR(Precheck(key, value, expected_revision));
    Members::Member& member = members_->Reachable(ConnectTimeout());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(options_.timeout));
    pb::TxnResponse response;
    grpc::Status status = member.kv->Txn(&context, CompareAndSetTxn(key, value, expected_revision), &response);
    return TxnOutcome(key, value, expected_revision, status, member, response);
  }

  std::unique_ptr<StateWatch> Watch(absl::string_view prefix, std::function<void(const Change&)> on_change) override {
    return record_watchers_.Add(prefix, std::move(on_change));
  }

  std::string Describe(absl::string_view key) override {
    return absl::StrCat("record ", key, " (etcd key ", RecordKey(key), " at ", members_->Endpoints(), ")");
  }

  secrets::SecretStore& secrets() override { return secrets_; }

  absl::Status CompactHistory() override {
    pb::RangeResponse response;
    RETURN_IF_ERROR(Range(options_.prefix, PrefixEnd(options_.prefix), /*count_only=*/true, &response));
    const int64_t target = compact_next_.exchange(response.header().revision());
    if (target <= 0) return absl::OkStatus();  // the first call only takes note
    pb::CompactionRequest request;
    request.set_revision(target);
    Members::Member& member = members_->Reachable(ConnectTimeout());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(options_.timeout));
    pb::CompactionResponse compacted;
    grpc::Status status = member.kv->Compact(&context, request, &compacted);
    // Compacted already, by an earlier call or by etcd's own --auto-compaction: done.
    if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) return absl::OkStatus();
    if (Unreachable(status)) members_->Failed(member);
    return FromEtcd(status, member.endpoint, absl::StrCat("a compaction to revision ", target), options_);
  }

  // For the secret store.
  const EtcdOptions& options() const { return options_; }
  std::string SecretKey(absl::string_view ns, absl::string_view name) const {
    return absl::StrCat(options_.prefix, kSecrets, ns, "/", name);
  }
  std::string SecretPrefix(absl::string_view ns) const { return absl::StrCat(options_.prefix, kSecrets, ns, "/"); }
  WatchList& secret_watchers() { return secret_watchers_; }

  // A read, from the current member or, when it cannot be reached, the others.
  absl::Status Range(const std::string& key, const std::string& range_end, bool count_only,
                     pb::RangeResponse* response) {
    pb::RangeRequest request;
    request.set_key(key);
    if (!range_end.empty()) request.set_range_end(range_end);
    request.set_count_only(count_only);
    grpc::Status status;
    for (size_t attempt = 0; attempt < members_->size(); ++attempt) {
      Members::Member& member = members_->Reachable(ConnectTimeout());
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(options_.timeout));
      status = member.kv->Range(&context, request, response);
      if (status.ok()) return absl::OkStatus();
      if (!Unreachable(status)) return FromEtcd(status, member.endpoint, "a read", options_);
      members_->Failed(member);
    }
    return FromEtcd(status, members_->Endpoints(), "a read", options_);
  }

  // One transaction, not retried elsewhere: its outcome may be unknown when it fails.
  absl::Status Txn(const pb::TxnRequest& request, pb::TxnResponse* response) {
    Members::Member& member = members_->Reachable(ConnectTimeout());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(options_.timeout));
    grpc::Status status = member.kv->Txn(&context, request, response);
    if (Unreachable(status)) members_->Failed(member);
    return FromEtcd(status, member.endpoint, "a write", options_);
  }

 private:
  // How long a member not yet connected may take to connect before the next is tried.
  absl::Duration ConnectTimeout() const { return std::min(options_.timeout, absl::Seconds(1)); }

  std::string RecordKey(absl::string_view key) const { return absl::StrCat(options_.prefix, kRecords, key); }

  // What can be refused without asking etcd.
  static absl::Status Precheck(absl::string_view key, const std::optional<std::string>& value,
                               int64_t expected_revision) {
    RETURN_IF_ERROR(ValidateWrite(key, value));
    // Deleting "when absent" deletes nothing: no record has revision 0.
    if (!value && expected_revision == 0) return CheckCompareAndSet(key, value, 0, 0);
    return absl::OkStatus();
  }

  // Compare the key's revision; then write, or else read the key (to say why not).
  pb::TxnRequest CompareAndSetTxn(absl::string_view key, const std::optional<std::string>& value,
                                  int64_t expected_revision) const {
    std::string full_key = RecordKey(key);
    pb::TxnRequest request;
    pb::Compare* compare = request.add_compare();
    compare->set_key(full_key);
    compare->set_result(pb::Compare::EQUAL);
    if (expected_revision == 0) {
      compare->set_target(pb::Compare::CREATE);
      compare->set_create_revision(0);
    } else {
      compare->set_target(pb::Compare::MOD);
      compare->set_mod_revision(expected_revision);
    }
    if (value) {
      pb::PutRequest* put = request.add_success()->mutable_request_put();
      put->set_key(full_key);
      put->set_value(*value);
    } else {
      request.add_success()->mutable_request_delete_range()->set_key(full_key);
    }
    request.add_failure()->mutable_request_range()->set_key(full_key);
    return request;
  }

  absl::StatusOr<int64_t> TxnOutcome(absl::string_view key, const std::optional<std::string>& value,
                                     int64_t expected_revision, const grpc::Status& status,
                                     Members::Member& member, const pb::TxnResponse& response) {
    if (!status.ok()) {
      if (Unreachable(status)) members_->Failed(member);
      absl::Status failed = FromEtcd(status, member.endpoint, absl::StrCat("a write of ", key), options_);
      if (!absl::IsUnavailable(failed)) return failed;
      return absl::UnavailableError(absl::StrCat(failed.message(), "; the write may or may not have been made"));
    }
    // A put or a delete is the store's new revision; the key's mod_revision is that.
    if (response.succeeded()) return response.header().revision();
    int64_t current = 0;
    if (response.responses_size() > 0 && response.responses(0).response_range().kvs_size() > 0) {
      current = response.responses(0).response_range().kvs(0).mod_revision();
    }
    absl::Status refused = CheckCompareAndSet(key, value, current, expected_revision);
    if (refused.ok()) {
      // The comparison failed but the key reads as expected: it changed and changed back
      // in between, which a revision never does.
      return absl::InternalError(absl::StrCat("etcd refused a write of ", key, " for no reason it tells"));
    }
    return refused;
  }

  // A CompareAndSet under way. gRPC's completion queue, not its callback API: in gRPC
  // 1.51 the callback API's shared queue is torn down when the last channel using it goes
  // and made anew by the next, and a store closed and another opened at once crashed in
  // that hand-over ("ref_counted.h: assertion failed: prior > 0", 1 run in ~50).
  struct AsyncTxn {
    std::string key;
    std::optional<std::string> value;
    int64_t expected_revision = 0;
    grpc::ClientContext context;
    pb::TxnRequest request;
    pb::TxnResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::TxnResponse>> reader;
    Members::Member* member = nullptr;
    Done done;
  };

  // Answers CompareAndSet calls as they complete, until the queue is shut down.
  void CompletionLoop() {
    void* tag = nullptr;
    bool ok = false;
    while (completions_.Next(&tag, &ok)) {
      std::shared_ptr<AsyncTxn> call(static_cast<AsyncTxn*>(tag));
      absl::StatusOr<int64_t> outcome =
          TxnOutcome(call->key, call->value, call->expected_revision, call->status, *call->member, call->response);
      // "Done" on the store's own thread, in order with the watch's notifications.
      callbacks_.Post([call, outcome = std::move(outcome)]() mutable { std::move(call->done)(outcome); });
      absl::MutexLock lock(&mu_);
      in_flight_--;
    }
  }

  // Reads the prefix's changes from `watch_from_` on, across reconnects.
  void WatchLoop() {
    int failures = 0;
    while (true) {
      Members::Member& member = members_->Reachable(ConnectTimeout());
      auto context = std::make_shared<grpc::ClientContext>();
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        watch_context_ = context;
      }
      auto stream = member.watch->Watch(context.get());
      pb::WatchRequest request;
      pb::WatchCreateRequest* create = request.mutable_create_request();
      create->set_key(options_.prefix);
      create->set_range_end(PrefixEnd(options_.prefix));
      create->set_start_revision(watch_from_);
      bool healthy = false;
      if (stream->Write(request)) {
        pb::WatchResponse response;
        while (stream->Read(&response)) {
          if (response.compact_revision() > 0) {
            // Changes before it are gone from etcd: go on from there, and say so.
            LogWarning("etcd_watch_compacted", {{"from_revision", absl::StrCat(watch_from_)},
                                                {"compact_revision", absl::StrCat(response.compact_revision())}});
            watch_from_ = response.compact_revision();
            break;
          }
          if (response.canceled()) break;
          if (!healthy && failures > 0) {
            LogInfo("etcd_watch_resumed", {{"endpoint", member.endpoint}, {"from_revision", absl::StrCat(watch_from_)}});
          }
          healthy = true;
          failures = 0;
          for (const auto& event : response.events()) Dispatch(event);
        }
      }
      context->TryCancel();
      grpc::Status status = stream->Finish();
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      if (!healthy) members_->Failed(member);
      if (failures == 0) {  // once per outage, not per attempt
        LogWarning("etcd_watch_lost", {{"endpoint", member.endpoint},
                                       {"error", status.error_message()},
                                       {"next", "reconnecting, then resuming from the last revision seen"}});
      }
      Clock::Real().SleepUntil(absl::Now() + EqualJitterBackoff(failures++, absl::Milliseconds(100),
                                                                absl::Seconds(2), 0.5),
                               watch_wakeup_);
    }
  }

  void Dispatch(const mvccpb::Event& event) {
    watch_from_ = event.kv().mod_revision() + 1;
    const std::string& key = event.kv().key();
    Change change;
    change.revision = event.kv().mod_revision();
    if (event.type() == mvccpb::Event::PUT) change.value = event.kv().value();
    std::string records = options_.prefix + kRecords;
    if (absl::StartsWith(key, records)) {
      change.key = key.substr(records.size());
      callbacks_.Post([this, change = std::move(change)] { record_watchers_.Notify(change); });
    } else if (absl::StartsWith(key, options_.prefix + kSecrets)) {
      change.key = key;
      callbacks_.Post([this, change = std::move(change)] { secret_watchers_.Notify(change); });
    }
  }

  const EtcdOptions options_;
  std::unique_ptr<Members> members_;
  EtcdSecretStore secrets_;
  WatchList record_watchers_;
  WatchList secret_watchers_;
  int64_t watch_from_ = 0;  // the watch thread's, after Start()
  std::atomic<int64_t> compact_next_{0};  // CompactHistory: the revision to compact to next time
  Wakeup watch_wakeup_;
  std::thread watch_thread_;
  grpc::CompletionQueue completions_;  // CompareAndSet's answers
  std::thread completion_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<grpc::ClientContext> watch_context_ ABSL_GUARDED_BY(mu_);

  // One thread, so "done" callbacks and watch notifications run in order. Last: it stops
  // (running what is queued) before the rest goes.
  WorkQueue callbacks_{1};
};

// ---- secrets ----

absl::StatusOr<secrets::SecretData> EtcdSecretStore::Get(absl::string_view ns, absl::string_view name) {
  RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
  std::string key = store_->SecretKey(ns, name);
  pb::RangeResponse response;
  RETURN_IF_ERROR(store_->Range(key, "", false, &response));
  if (response.kvs_size() == 0) return absl::NotFoundError(absl::StrCat("secret ", ns, "/", name, " does not exist"));
  std::string value = response.kvs(0).value();
  const std::optional<SecretCipher>& cipher = store_->options().cipher;
  if (cipher) {
    absl::StatusOr<std::string> opened = cipher->Open(value, key);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(), absl::StrCat("secret ", ns, "/", name, " in etcd (", key,
                                                               "): ", opened.status().message()));
    }
    value = *std::move(opened);
  } else if (SecretCipher::IsSealed(value)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "secret ", ns, "/", name, " in etcd (", key,
        ") is encrypted: give the key it was written with in --state_encryption_key_file"));
  }
  v1::StoredSecret stored;
  if (!stored.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("secret ", ns, "/", name, " in etcd (", key,
                                            ") cannot be decoded: was it written by something else?"));
  }
  return secrets::SecretData(stored.data().begin(), stored.data().end());
}

namespace {

absl::StatusOr<pb::TxnRequest> SecretWrite(const std::string& key, const secrets::SecretData& data,
                                           bool only_if_absent, const std::optional<SecretCipher>& cipher) {
  v1::StoredSecret stored;
  for (const auto& [name, value] : data) (*stored.mutable_data())[name] = value;
  pb::TxnRequest request;
  if (only_if_absent) {
    pb::Compare* compare = request.add_compare();
    compare->set_key(key);
    compare->set_result(pb::Compare::EQUAL);
    compare->set_target(pb::Compare::CREATE);
    compare->set_create_revision(0);
  }
  pb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  stored.SerializeToString(put->mutable_value());
  if (cipher) {
    // The etcd key is the additional data: a value copied under another name does not open.
    ASSIGN_OR_RETURN(*put->mutable_value(), cipher->Seal(put->value(), key));
  }
  return request;
}

}  // namespace

absl::Status EtcdSecretStore::Put(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) {
  RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
  RETURN_IF_ERROR(secrets::ValidateSecretData(data));
  std::string key = store_->SecretKey(ns, name);
  ASSIGN_OR_RETURN(pb::TxnRequest request, SecretWrite(key, data, false, store_->options().cipher));
  pb::TxnResponse response;
  return store_->Txn(request, &response);
}

absl::Status EtcdSecretStore::Create(absl::string_view ns, absl::string_view name, const secrets::SecretData& data) {
  RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
  RETURN_IF_ERROR(secrets::ValidateSecretData(data));
  std::string key = store_->SecretKey(ns, name);
  ASSIGN_OR_RETURN(pb::TxnRequest request, SecretWrite(key, data, true, store_->options().cipher));
  pb::TxnResponse response;
  RETURN_IF_ERROR(store_->Txn(request, &response));
  if (!response.succeeded()) return absl::AlreadyExistsError(absl::StrCat("secret ", ns, "/", name, " already exists"));
  return absl::OkStatus();
}

absl::Status EtcdSecretStore::Delete(absl::string_view ns, absl::string_view name) {
  RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, name));
  pb::TxnRequest request;
  request.add_success()->mutable_request_delete_range()->set_key(store_->SecretKey(ns, name));
  pb::TxnResponse response;
  RETURN_IF_ERROR(store_->Txn(request, &response));
  if (response.responses_size() == 0 || response.responses(0).response_delete_range().deleted() == 0) {
    return absl::NotFoundError(absl::StrCat("secret ", ns, "/", name, " does not exist"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> EtcdSecretStore::List(absl::string_view ns) {
  RETURN_IF_ERROR(secrets::ValidateSecretNames(ns, "x"));
  std::string prefix = store_->SecretPrefix(ns);
  pb::RangeResponse response;
  RETURN_IF_ERROR(store_->Range(prefix, PrefixEnd(prefix), false, &response));
  std::vector<std::string> names;
  for (const auto& kv : response.kvs()) names.push_back(kv.key().substr(prefix.size()));
  return names;  // etcd returns keys in order
}

std::unique_ptr<secrets::SecretWatch> EtcdSecretStore::Watch(absl::string_view ns, absl::string_view name,
                                                             std::function<void()> on_change) {
  class Handle : public secrets::SecretWatch {
   public:
    explicit Handle(std::unique_ptr<StateWatch> watch) : watch_(std::move(watch)) {}

   private:
    std::unique_ptr<StateWatch> watch_;
  };
  std::string key = store_->SecretKey(ns, name);
  return std::make_unique<Handle>(store_->secret_watchers().Add(
      key, [key, on_change = std::move(on_change)](const Change& change) {
        if (change.key == key) on_change();  // not another secret whose name starts the same
      }));
}

}  // namespace

std::string EtcdPrefixFor(const std::string& ns) { return absl::StrCat("/relay/", ns, "/"); }

absl::StatusOr<std::unique_ptr<StateStore>> OpenEtcdStateStore(EtcdOptions options) {
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("etcd key prefix \"", options.prefix, "\" must end with '/'"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Members> members, Members::Connect(options));
  auto store = std::make_unique<EtcdStateStore>(std::move(options), std::move(members));
  RETURN_IF_ERROR(store->Start());
  return store;
}

}  // namespace relay::state
