// relayctl: the operator's command line for relay. See README.md ("relayctl").
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "api/relay/v1/relay.grpc.pb.h"
#include "common/flags.h"
#include "common/grpc_tls.h"
#include "common/log.h"
#include "common/names.h"
#include "common/unix_socket_path.h"
#include "config/values.h"
#include "grpcpp/grpcpp.h"
#include "common/state_lock.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"
#include "mgmt/cluster_registry.h"
#include "mgmt/management_pki.h"
#include "state/etcd_state_store.h"
#include "state/local_state_store.h"
#include "pki/certificate.h"
#include "pki/pem.h"
#include "pki/rotation.h"
#include "kube/secret_backend.h"
#include "secrets/directory_store.h"
#include "tokens/identity_token.h"

ABSL_FLAG(std::string, mgmt_secrets_dir, "",
          "The management server's secret store. Default: <workspace>/.relay/mgmt under `bazel "
          "run`, else ./.relay/mgmt (the server's own default).");
ABSL_FLAG(std::string, secrets_dir, "",
          "A workload cluster's secret store (register, check, certs inspect --secret). Default: "
          "<workspace>/.relay/agent-<cluster>, the agent's own default.");
ABSL_FLAG(std::string, namespace, "gloo-mesh", "Namespace of the relay secrets.");
ABSL_FLAG(relay::kube::SecretBackend, secrets, relay::kube::SecretBackend::kDirectory,
          "secrets export: where the management server keeps its secrets (its own --secrets): directory "
          "(--mgmt_secrets_dir) or kubernetes (through --kubeconfig).");
ABSL_FLAG(std::string, kubeconfig, "",
          "secrets export with --secrets=kubernetes: kubeconfig of the management cluster (its current "
          "context). Empty: in-cluster.");
ABSL_FLAG(std::string, values, "",
          "Helm values file: glooMgmtServer.relay for install; glooAgent.relay for register, "
          "check and certs inspect.");
ABSL_FLAG(std::string, admin_socket, "",
          "The server's admin socket. Default: <mgmt_secrets_dir>/admin.sock.");
ABSL_FLAG(std::string, cluster, "", "Workload cluster name (register, push).");
ABSL_FLAG(absl::Duration, bootstrap_token_ttl, absl::ZeroDuration(),
          "register: instead of copying the shared token, create a single-use token bound to the "
          "cluster that expires after this long (e.g. 1h); needs the running server. 0: copy the "
          "shared token.");
ABSL_FLAG(absl::Duration, overlap, absl::Hours(24),
          "token rotate: how long the previous shared token is still accepted (give the new one to every "
          "workload cluster that may register within it).");
ABSL_FLAG(std::string, cert_file, "",
          "ca stage: the new intermediate's certificate (PEM, chain to the root allowed). ca rotate-root: a new root "
          "of your own (self-signed) to rotate to, instead of one the server makes.");
ABSL_FLAG(std::string, key_file, "",
          "ca stage / ca rotate-root: the key of --cert_file (PEM; read here, sent over the admin socket only).");
ABSL_FLAG(bool, force, false,
          "ca rotate-root: move the root rotation to its next phase without waiting for the clusters its gate "
          "still lists.");
ABSL_FLAG(std::string, file, "", "certs inspect: a PEM file (certificate or chain).");
ABSL_FLAG(std::string, secret, "",
          "certs inspect: a secret name instead of a file (its tls.crt, else ca.crt), in "
          "--secrets_dir or, with --mgmt, in --mgmt_secrets_dir.");
ABSL_FLAG(bool, mgmt, false, "certs inspect --secret: read from the management store.");
ABSL_FLAG(double, grace_period_ratio, 0.5,
          "Share of a certificate's lifetime left when rotation is due "
          "(clientTlsSecretRotationGracePeriodRatio), for certs inspect and check.");
ABSL_FLAG(std::vector<std::string>, server_san, {}, "install: extra server certificate DNS names / IPs.");
ABSL_FLAG(std::string, authority, relay::config::kDefaultAuthority,
          "Name the server certificate carries (install) and agents verify (check).");
ABSL_FLAG(std::string, server_address, "",
          "check: relay address to test a TLS handshake against, e.g. 127.0.0.1:9900.");
ABSL_FLAG(std::string, log_level, "warning", "debug, info, warning or error.");
ABSL_FLAG(std::string, from, "local", "state migrate: where the state is now (local: --mgmt_secrets_dir).");
ABSL_FLAG(std::string, to, "etcd", "state migrate: where it goes (etcd: --etcd_endpoints).");
ABSL_FLAG(std::vector<std::string>, etcd_endpoints, {}, "state migrate: host:port of the etcd members, comma-separated.");
ABSL_FLAG(std::string, etcd_ca_file, "", "state migrate: CA bundle of etcd's serving certificate (TLS when set).");
ABSL_FLAG(std::string, etcd_cert_file, "", "state migrate: client certificate for etcd.");
ABSL_FLAG(std::string, etcd_key_file, "", "state migrate: key of --etcd_cert_file.");
ABSL_FLAG(std::string, state_encryption_key_file, "",
          "state migrate: the key file the replicas will use (--state_encryption_key_file of the server): "
          "secrets are sealed with it in etcd.");
ABSL_FLAG(bool, state_plaintext_secrets, false,
          "state migrate: store secrets in etcd unencrypted (as the server's --state_plaintext_secrets).");

namespace {

namespace v1 = ::relay::v1;
using relay::secrets::DirectorySecretStore;

constexpr char kUsage[] = R"(relayctl: operate a relay management server and its workload clusters.

Commands:
  install                       create the management secrets (root CA, signing CA, server
                                certificate, identity token) without starting a server
  register --cluster NAME       copy the root ca.crt and the identity token from the management
                                store to the cluster's store (or, with --bootstrap_token_ttl,
                                a single-use token bound to the cluster); with a running
                                server it admits the cluster: lifts a deregistration and
                                lets its next Register replace a still valid certificate
  certs inspect --file F | --secret NAME
                                subject, SANs, serial, validity, time left, rotation due
  clusters list                 registered vs connected clusters and certificate expiry
  clusters deregister NAME      revoke a cluster: its streams close, Renew and Connect fail
  state migrate --from=local --to=etcd --etcd_endpoints=H:P,...
                                copy a single server's store (records and secrets of
                                --namespace) into etcd, so replicas take over its clusters
                                without re-registering them; the server must be stopped.
                                Idempotent: what etcd already holds is left as it is, and
                                a value that differs is reported, never overwritten
  registry repair               when the server refuses to start on a damaged registry
                                journal: keep the damaged file aside and write one with every
                                whole record (the server must be stopped)
  push --cluster NAME FILE...   send files as the cluster's next snapshot
  secrets export --cluster NAME print the root ca.crt and the identity token (or, with
                                --bootstrap_token_ttl, a single-use token bound to NAME) as
                                Kubernetes Secret manifests for the workload cluster:
                                relayctl secrets export --cluster=east | kubectl apply -f -
                                (refuses to print to a terminal)
  ca status                     the root, the intermediate (and retired ones still kept), the
                                server certificate: serial, expiry, time left, when the
                                intermediate is replaced
  ca rotate-intermediate        replace the intermediate now (it is replaced by itself when a
                                sixth of its lifetime remains); the old one stays trusted
                                until it expires
  ca rotate-root [--force] [--cert_file F --key_file K]
                                start a root rotation (to a root the server makes, or to yours),
                                or move the current one on: add (a new
                                root is trusted beside the old one and sent to every agent),
                                switch (issuing under it), retire (the old root is dropped),
                                done. Each phase moves on by itself once every registered
                                cluster has confirmed it; --force moves on without them
  ca stage --cert_file F --key_file K
                                install an intermediate you made under your root (with
                                disableCaCertGeneration, or a root without its key here)
                                the way a rotation does
  token rotate [--overlap=24h]  a new shared identity token; the previous one is still
                                accepted for the overlap (give clusters the new one with
                                secrets export)
  tokens list                   live bootstrap tokens: hash prefix, cluster, expiry, uses
  tokens revoke HASH            revoke a bootstrap token (its hash prefix from tokens list)
  check                         reachability, registration vs connection, certificates past
                                their rotation point, and whether the server and agent
                                secrets trust each other; exits 1 on any problem

Flags (all commands):)";

std::string Ago(absl::Duration d) {
  if (d < absl::ZeroDuration()) return absl::StrCat("-", Ago(-d));
  int64_t seconds = absl::ToInt64Seconds(d);
  if (seconds < 120) return absl::StrCat(seconds, "s");
  if (seconds < 7200) return absl::StrCat(seconds / 60, "m");
  if (seconds < 172800) return absl::StrCat(seconds / 3600, "h");
  return absl::StrCat(seconds / 86400, "d");
}

std::string MgmtDir() { return relay::DefaultStateDir(absl::GetFlag(FLAGS_mgmt_secrets_dir), "mgmt"); }

std::string WorkloadDir(const std::string& cluster) {
  return relay::DefaultStateDir(absl::GetFlag(FLAGS_secrets_dir), "agent-" + cluster);
}

std::string AdminSocket() {
  std::string socket = absl::GetFlag(FLAGS_admin_socket);
  return socket.empty() ? MgmtDir() + "/admin.sock" : socket;
}

// The admin socket as a path a Unix socket address takes: through its directory when
// it is too long, held open for the rest of this short-lived process.
std::string UsableAdminSocket() {
  static const auto* path = new absl::StatusOr<relay::UnixSocketPath>(relay::UnixSocketPath::For(AdminSocket()));
  return path->ok() ? (*path)->usable() : AdminSocket();  // a failing call then says where it looked
}

std::unique_ptr<v1::Admin::Stub> AdminStub() {
  return v1::Admin::NewStub(grpc::CreateChannel("unix:" + UsableAdminSocket(), grpc::InsecureChannelCredentials()));
}

// Calls that write secrets (a new intermediate) may take longer than a lookup.
std::unique_ptr<grpc::ClientContext> AdminContext(absl::Duration timeout = absl::Seconds(5)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// A whole file's bytes, or nullopt when it cannot be read.
std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int Fail(const std::string& message) {
  std::cerr << "relayctl: " << message << "\n";
  return 1;
}

std::string AdminFailureMessage(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::StrCat("cannot reach the management server's admin socket ", AdminSocket(),
                        ": is the server running? (point --admin_socket or --mgmt_secrets_dir "
                        "at it) [", status.error_message(), "]");
  }
  return status.error_message();
}

int AdminFailure(const grpc::Status& status) { return Fail(AdminFailureMessage(status)); }

// The exit code of an admin call that answers with a message: printed, or the failure.
int PrintAdminAnswer(const grpc::Status& status, const v1::AdminResponse& response) {
  if (!status.ok()) return AdminFailure(status);
  std::cout << response.message() << "\n";
  return 0;
}

absl::StatusOr<std::unique_ptr<DirectorySecretStore>> OpenStore(const std::string& dir) {
  return DirectorySecretStore::Create(dir);
}

// A token for `cluster`: the shared one from `mgmt`, or a single-use one bound to the
// cluster that the running server creates (--bootstrap_token_ttl). `note` says which.
absl::StatusOr<std::string> TokenFor(relay::secrets::SecretStore& mgmt, const std::string& ns,
                                     const std::string& cluster, std::string* note);

// ---------------------------------------------------------------------------

int Install() {
  absl::StatusOr<relay::config::MgmtServerValues> values =
      relay::config::LoadMgmtServerValues(absl::GetFlag(FLAGS_values));
  if (!values.ok()) return Fail(std::string(values.status().message()));
  relay::mgmt::ManagementPkiOptions options;
  options.ns = absl::GetFlag(FLAGS_namespace);
  options.values = *values;
  options.authority = absl::GetFlag(FLAGS_authority);
  if (absl::Status sans = relay::SplitSans(absl::GetFlag(FLAGS_server_san), &options.extra_dns_names,
                                           &options.extra_ip_addresses);
      !sans.ok()) {
    return Fail(std::string(sans.message()));
  }
  auto store = OpenStore(MgmtDir());
  if (!store.ok()) return Fail(std::string(store.status().message()));
  absl::StatusOr<relay::mgmt::ManagementPki> pki =
      relay::mgmt::EnsureManagementPki(**store, options, absl::Now());
  if (!pki.ok()) return Fail(std::string(pki.status().message()));
  std::cout << "management secrets in " << MgmtDir() << " (namespace " << options.ns << "):\n";
  for (const std::string& name : {values->root_tls_secret, values->signing_tls_secret,
                                   values->tls_secret, values->token_secret.name}) {
    std::string full = absl::StrCat(name == values->token_secret.name
                                        ? relay::mgmt::TokenNamespace(*values, options.ns)
                                        : options.ns,
                                    "/", name);
    bool created = std::find(pki->created.begin(), pki->created.end(), full) != pki->created.end();
    bool used = name != values->signing_tls_secret || pki->signer != nullptr;
    if (name == values->token_secret.name && values->disable_ca) used = false;
    if (!used) continue;
    std::cout << "  " << std::left << std::setw(45) << full << (created ? "created" : "kept (exists, checked)") << "\n";
  }
  return 0;
}

int Register() {
  std::string cluster = absl::GetFlag(FLAGS_cluster);
  if (absl::Status name = relay::ValidateClusterName(cluster); !name.ok()) {
    return Fail(cluster.empty() ? "register needs --cluster NAME" : std::string(name.message()));
  }
  absl::StatusOr<relay::config::AgentValues> agent_values =
      relay::config::LoadAgentValues(absl::GetFlag(FLAGS_values));
  if (!agent_values.ok()) return Fail(std::string(agent_values.status().message()));
  std::string ns = absl::GetFlag(FLAGS_namespace);
  relay::config::MgmtServerValues mgmt_values;  // the management side's secret names
  auto mgmt = OpenStore(MgmtDir());
  auto workload = OpenStore(WorkloadDir(cluster));
  if (!mgmt.ok()) return Fail(std::string(mgmt.status().message()));
  if (!workload.ok()) return Fail(std::string(workload.status().message()));

  absl::StatusOr<relay::secrets::SecretData> root = (*mgmt)->Get(ns, mgmt_values.root_tls_secret);
  if (!root.ok()) {
    return Fail(absl::StrCat(root.status().message(),
                             ": run the server once or `relayctl install` first"));
  }
  absl::StatusOr<std::string> ca = relay::secrets::GetKey(*root, ns, mgmt_values.root_tls_secret, "ca.crt");
  if (!ca.ok()) return Fail(std::string(ca.status().message()));

  std::string token_note;
  absl::StatusOr<std::string> issued = TokenFor(**mgmt, ns, cluster, &token_note);
  if (!issued.ok()) return Fail(std::string(issued.status().message()));
  const std::string& token = *issued;
  std::string token_ns = agent_values->token_secret.Namespace(ns);
  absl::Status wrote_root = (*workload)->Put(ns, agent_values->root_tls_secret, {{"ca.crt", *ca}});
  if (!wrote_root.ok()) return Fail(std::string(wrote_root.message()));
  absl::Status wrote_token = (*workload)->Put(token_ns, agent_values->token_secret.name,
                                              {{agent_values->token_secret.key, token}});
  if (!wrote_token.ok()) return Fail(std::string(wrote_token.message()));
  std::cout << "cluster " << cluster << " can register. Wrote to " << WorkloadDir(cluster) << ":\n"
            << "  " << ns << "/" << agent_values->root_tls_secret << "  ca.crt (the relay root CA)\n"
            << "  " << token_ns << "/" << agent_values->token_secret.name << "  "
            << agent_values->token_secret.key << " (" << token_note << ")\n"
            << "Start the agent with --cluster=" << cluster << " --secrets_dir=" << WorkloadDir(cluster)
            << "\n";
  return 0;
}

void PrintCertificate(const relay::pki::CertificateInfo& info, double ratio, absl::Time now) {
  std::cout << "  subject:     " << info.subject << "\n"
            << "  issuer:      " << info.issuer << "\n"
            << "  serial:      " << info.serial_hex << "\n"
            << "  DNS SANs:    " << (info.dns_names.empty() ? "-" : absl::StrJoin(info.dns_names, ", ")) << "\n"
            << "  IP SANs:     " << (info.ip_addresses.empty() ? "-" : absl::StrJoin(info.ip_addresses, ", ")) << "\n"
            << "  CA:          " << (info.is_ca ? "yes" : "no") << "\n"
            << "  not before:  " << relay::pki::FormatUtc(info.not_before) << "\n"
            << "  not after:   " << relay::pki::FormatUtc(info.not_after) << "\n";
  if (now > info.not_after) {
    std::cout << "  time left:   EXPIRED " << Ago(now - info.not_after) << " ago\n";
  } else {
    std::cout << "  time left:   " << Ago(info.not_after - now) << " ("
              << std::fixed << std::setprecision(0) << info.FractionRemaining(now) * 100
              << "% of its lifetime)\n";
  }
  absl::StatusOr<absl::Time> due = relay::pki::RenewAt(info, ratio);
  if (due.ok()) {
    std::cout << "  rotation:    " << (now >= *due ? "DUE since " : "due at ")
              << relay::pki::FormatUtc(*due) << " (ratio " << std::setprecision(2) << ratio << ")\n";
  }
}

int CertsInspect() {
  std::string pem;
  std::string label;
  if (!absl::GetFlag(FLAGS_file).empty()) {
    std::optional<std::string> read = ReadWholeFile(absl::GetFlag(FLAGS_file));
    if (!read) return Fail(absl::StrCat("cannot read ", absl::GetFlag(FLAGS_file)));
    pem = *std::move(read);
    label = absl::GetFlag(FLAGS_file);
  } else if (!absl::GetFlag(FLAGS_secret).empty()) {
    std::string dir = absl::GetFlag(FLAGS_mgmt) ? MgmtDir() : WorkloadDir(absl::GetFlag(FLAGS_cluster));
    auto store = OpenStore(dir);
    if (!store.ok()) return Fail(std::string(store.status().message()));
    std::string ns = absl::GetFlag(FLAGS_namespace);
    absl::StatusOr<relay::secrets::SecretData> data = (*store)->Get(ns, absl::GetFlag(FLAGS_secret));
    if (!data.ok()) return Fail(std::string(data.status().message()));
    const char* key = data->count("tls.crt") ? "tls.crt" : "ca.crt";
    if (!data->count(key)) return Fail("the secret holds neither tls.crt nor ca.crt");
    pem = data->at(key);
    label = absl::StrCat(ns, "/", absl::GetFlag(FLAGS_secret), " ", key, " (", dir, ")");
  } else {
    return Fail("certs inspect needs --file PEM or --secret NAME");
  }
  absl::StatusOr<std::vector<relay::pki::UniquePtr<X509>>> chain =
      relay::pki::ParseCertificateChainPem(pem);
  if (!chain.ok()) return Fail(absl::StrCat(label, ": ", chain.status().message()));
  absl::Time now = absl::Now();
  std::cout << label << "\n";
  for (size_t i = 0; i < chain->size(); ++i) {
    absl::StatusOr<relay::pki::CertificateInfo> info = relay::pki::InspectCertificate((*chain)[i].get());
    if (!info.ok()) return Fail(std::string(info.status().message()));
    std::cout << "certificate " << i + 1 << " of " << chain->size() << "\n";
    PrintCertificate(*info, absl::GetFlag(FLAGS_grace_period_ratio), now);
  }
  return 0;
}

int ClustersList() {
  v1::ListClustersResponse response;
  grpc::Status status = AdminStub()->ListClusters(AdminContext().get(), v1::ListClustersRequest(), &response);
  if (!status.ok()) return AdminFailure(status);
  absl::Time now = absl::Now();
  std::cout << std::left << std::setw(24) << "CLUSTER" << std::setw(14) << "REGISTERED" << std::setw(11)
            << "CONNECTED" << std::setw(22) << "CERT EXPIRES" << std::setw(10) << "LEFT"
            << "SNAPSHOT (ACKED)\n";
  for (const v1::ClusterInfo& cluster : response.clusters()) {
    absl::Time not_after = absl::FromUnixSeconds(cluster.cert_not_after_unix());
    std::string registered = cluster.deregistered() ? "deregistered" : cluster.registered() ? "yes" : "no";
    std::cout << std::setw(24) << cluster.name() << std::setw(14) << registered << std::setw(11)
              << (cluster.connected() ? "yes" : "no") << std::setw(22)
              << (cluster.cert_not_after_unix() > 0 ? relay::pki::FormatUtc(not_after) : "-")
              << std::setw(10) << (cluster.cert_not_after_unix() > 0 ? Ago(not_after - now) : "-")
              << cluster.snapshot_version() << " (" << cluster.acked_version() << ")\n";
  }
  if (response.clusters().empty()) std::cout << "(no clusters yet)\n";
  return 0;
}

int ClustersDeregister(const std::string& cluster) {
  v1::ClusterRequest request;
  request.set_cluster(cluster);
  v1::AdminResponse response;
  return PrintAdminAnswer(AdminStub()->DeregisterCluster(AdminContext().get(), request, &response), response);
}

int CaRotateIntermediate() {
  v1::RotateIntermediateRequest request;
  v1::AdminResponse response;
  return PrintAdminAnswer(
      AdminStub()->RotateIntermediate(AdminContext(absl::Seconds(30)).get(), request, &response), response);
}

// Reads --cert_file and --key_file into `certificate_pem` and `key_pem`; false (said on
// stderr) when one cannot be read.
bool ReadCertificateAndKey(std::string* certificate_pem, std::string* key_pem) {
  for (auto [path, field] : {std::pair{absl::GetFlag(FLAGS_cert_file), certificate_pem},
                             std::pair{absl::GetFlag(FLAGS_key_file), key_pem}}) {
    std::optional<std::string> content = ReadWholeFile(path);
    if (!content) {
      Fail(absl::StrCat("cannot read ", path));
      return false;
    }
    *field = *std::move(content);
  }
  return true;
}

int CaRotateRoot() {
  v1::RotateRootRequest request;
  request.set_force(absl::GetFlag(FLAGS_force));
  if (absl::GetFlag(FLAGS_cert_file).empty() != absl::GetFlag(FLAGS_key_file).empty()) {
    return Fail("ca rotate-root takes a staged root as --cert_file=FILE and --key_file=FILE together");
  }
  if (!absl::GetFlag(FLAGS_cert_file).empty() &&
      !ReadCertificateAndKey(request.mutable_certificate_pem(), request.mutable_key_pem())) {
    return 1;
  }
  v1::AdminResponse response;
  return PrintAdminAnswer(AdminStub()->RotateRoot(AdminContext(absl::Seconds(30)).get(), request, &response),
                          response);
}

int CaStage() {
  if (absl::GetFlag(FLAGS_cert_file).empty() || absl::GetFlag(FLAGS_key_file).empty()) {
    return Fail("ca stage needs --cert_file=FILE and --key_file=FILE");
  }
  v1::StageIntermediateRequest request;
  if (!ReadCertificateAndKey(request.mutable_certificate_pem(), request.mutable_key_pem())) return 1;
  v1::AdminResponse response;
  return PrintAdminAnswer(
      AdminStub()->StageIntermediate(AdminContext(absl::Seconds(30)).get(), request, &response), response);
}

int CaStatus() {
  v1::CaStatusRequest request;
  v1::CaStatusResponse response;
  grpc::Status status = AdminStub()->CaStatus(AdminContext().get(), request, &response);
  if (!status.ok()) return AdminFailure(status);
  absl::Time now = absl::Now();
  std::cout << std::left << std::setw(22) << "ROLE" << std::setw(36) << "SERIAL" << std::setw(22) << "NOT AFTER"
            << std::setw(10) << "LEFT" << "ROTATION\n";
  for (const v1::CaInfo& ca : response.cas()) {
    absl::Time not_after = absl::FromUnixSeconds(ca.not_after_unix());
    std::string rotation = "-";
    if (ca.rotation_due_unix() != 0) {
      absl::Time due = absl::FromUnixSeconds(ca.rotation_due_unix());
      rotation = due <= now ? "due now" : absl::StrCat("in ", Ago(due - now));
    }
    std::cout << std::setw(22) << ca.role() << std::setw(36) << ca.serial() << std::setw(22)
              << relay::pki::FormatUtc(not_after) << std::setw(10) << Ago(not_after - now) << rotation << "\n";
  }
  std::cout << "trust bundle " << response.trust_bundle_digest().substr(0, 12) << ": stored by "
            << response.clusters_with_bundle() << " of " << response.clusters() << " registered clusters";
  if (response.without_bundle_size() > 0) {
    std::cout << " (not yet: " << absl::StrJoin(response.without_bundle(), ", ")
              << (response.clusters() - response.clusters_with_bundle() > response.without_bundle_size() ? ", ..." : "")
              << ")";
  }
  std::cout << "\n";
  if (response.has_root_rotation()) {
    const v1::RootRotationStatus& rotation = response.root_rotation();
    std::cout << "root rotation " << rotation.previous_serial() << " -> " << rotation.next_serial() << ": phase "
              << rotation.phase() << ", started "
              << relay::pki::FormatUtc(absl::FromUnixSeconds(rotation.started_unix()));
    if (rotation.switched_unix() != 0) {
      std::cout << ", switched " << relay::pki::FormatUtc(absl::FromUnixSeconds(rotation.switched_unix()));
    }
    if (rotation.finished_unix() != 0) {
      std::cout << ", finished " << relay::pki::FormatUtc(absl::FromUnixSeconds(rotation.finished_unix()));
    }
    std::cout << "\n";
    if (rotation.phase() != "done") {
      std::cout << "  waits until " << rotation.gate() << ": " << rotation.clusters_ready() << " of "
                << rotation.clusters() << " there";
      if (rotation.waiting_size() > 0) {
        std::cout << " (not yet: " << absl::StrJoin(rotation.waiting(), ", ")
                  << (rotation.clusters() - rotation.clusters_ready() > rotation.waiting_size() ? ", ..." : "") << ")";
      }
      std::cout << "\n";
    }
  }
  return 0;
}

int TokenRotate() {
  v1::RotateSharedTokenRequest request;
  request.set_overlap_seconds(absl::ToInt64Seconds(absl::GetFlag(FLAGS_overlap)));
  v1::AdminResponse response;
  return PrintAdminAnswer(AdminStub()->RotateSharedToken(AdminContext().get(), request, &response), response);
}

int TokensList() {
  v1::ListBootstrapTokensRequest request;
  v1::ListBootstrapTokensResponse response;
  grpc::Status status = AdminStub()->ListBootstrapTokens(AdminContext().get(), request, &response);
  if (!status.ok()) return AdminFailure(status);
  absl::Time now = absl::Now();
  std::cout << std::left << std::setw(16) << "HASH" << std::setw(24) << "CLUSTER" << std::setw(12) << "EXPIRES IN"
            << "USES LEFT\n";
  for (const v1::BootstrapTokenInfo& token : response.tokens()) {
    std::cout << std::setw(16) << token.hash_prefix() << std::setw(24) << token.cluster() << std::setw(12)
              << Ago(absl::FromUnixSeconds(token.expires_unix()) - now) << token.uses_left() << "\n";
  }
  return 0;
}

int TokensRevoke(const std::string& hash_prefix) {
  v1::RevokeBootstrapTokenRequest request;
  request.set_hash_prefix(hash_prefix);
  v1::AdminResponse response;
  return PrintAdminAnswer(AdminStub()->RevokeBootstrapToken(AdminContext().get(), request, &response), response);
}

int RegistryRepair() {
  std::string dir = MgmtDir();
  std::string path = relay::state::LocalStateStore::JournalPath(dir, absl::GetFlag(FLAGS_namespace));
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    return Fail(absl::StrCat("there is no registry journal at ", path,
                             ": point --mgmt_secrets_dir (and --namespace) at the server's state"));
  }
  // The server holds this lock while it runs: never repair under it.
  absl::StatusOr<std::unique_ptr<relay::StateLock>> lock =
      relay::StateLock::Acquire(dir, "relayctl registry repair", "Stop the server before repairing its journal.");
  if (!lock.ok()) return Fail(std::string(lock.status().message()));
  absl::StatusOr<relay::state::LocalStateStore::Repair> repair =
      relay::state::LocalStateStore::RepairJournal(path, absl::Now(), relay::mgmt::ClusterRegistry::ValidateRecord);
  if (!repair.ok()) return Fail(std::string(repair.status().message()));
  if (repair->damaged_copy.empty()) {
    std::cout << path << " is whole (" << repair->kept << " records): nothing to repair\n";
    return 0;
  }
  std::cout << "kept the damaged journal as " << repair->damaged_copy << "\n"
            << "wrote " << path << " with the " << repair->kept << " whole records\n";
  if (!repair->dropped.empty()) {
    std::cout << "dropped " << repair->dropped.size() << " damaged record(s); for each one named, the "
              << "record before it applies now (check it with relayctl clusters list, and deregister it "
              << "again if it was being deregistered):\n";
    for (const std::string& line : repair->dropped) std::cout << "  " << line << "\n";
  }
  return 0;
}

int StateMigrate() {
  if (absl::GetFlag(FLAGS_from) != "local" || absl::GetFlag(FLAGS_to) != "etcd") {
    return Fail("state migrate copies --from=local --to=etcd (the only direction there is)");
  }
  const std::string ns = absl::GetFlag(FLAGS_namespace);
  relay::state::EtcdOptions etcd;
  etcd.endpoints = absl::GetFlag(FLAGS_etcd_endpoints);
  if (etcd.endpoints.empty()) return Fail("state migrate needs --etcd_endpoints=host:port[,host:port...]");
  etcd.ca_file = absl::GetFlag(FLAGS_etcd_ca_file);
  etcd.cert_file = absl::GetFlag(FLAGS_etcd_cert_file);
  etcd.key_file = absl::GetFlag(FLAGS_etcd_key_file);
  etcd.prefix = relay::state::EtcdPrefixFor(ns);
  if (std::string key_file = absl::GetFlag(FLAGS_state_encryption_key_file); !key_file.empty()) {
    absl::StatusOr<relay::state::SecretCipher> cipher = relay::state::SecretCipher::FromKeyFile(key_file);
    if (!cipher.ok()) return Fail(std::string(cipher.status().message()));
    etcd.cipher = *std::move(cipher);
  } else if (!absl::GetFlag(FLAGS_state_plaintext_secrets)) {
    return Fail("give --state_encryption_key_file (the file the replicas will use) so the CA keys and tokens are "
                "sealed in etcd, or --state_plaintext_secrets to copy them unencrypted");
  }
  // The local store's lock: the server must be stopped, and nothing changes under us.
  relay::state::LocalStateOptions local_options;
  local_options.dir = MgmtDir();
  local_options.ns = ns;
  local_options.holder = "relayctl state migrate";
  local_options.busy_advice = "Stop the server before migrating its state.";
  absl::StatusOr<std::unique_ptr<relay::state::LocalStateStore>> local =
      relay::state::LocalStateStore::Open(local_options);
  if (!local.ok()) return Fail(std::string(local.status().message()));
  absl::StatusOr<std::unique_ptr<relay::state::StateStore>> target = relay::state::OpenEtcdStateStore(etcd);
  if (!target.ok()) return Fail(std::string(target.status().message()));

  int copied = 0, present = 0;
  std::vector<std::string> conflicts;
  absl::StatusOr<std::map<std::string, relay::state::Record>> records = (*local)->List("");
  if (!records.ok()) return Fail(std::string(records.status().message()));
  for (const auto& [key, record] : *records) {
    absl::StatusOr<relay::state::Record> there = (*target)->Get(key);
    if (there.ok()) {
      if (there->value == record.value) {
        present++;
      } else {
        conflicts.push_back(absl::StrCat("record ", key));
      }
      continue;
    }
    if (!absl::IsNotFound(there.status())) return Fail(std::string(there.status().message()));
    absl::StatusOr<int64_t> written = (*target)->CompareAndSetAndWait(key, record.value, 0);
    if (!written.ok()) return Fail(absl::StrCat("copying record ", key, ": ", written.status().message()));
    copied++;
  }
  absl::StatusOr<std::vector<std::string>> names = (*local)->secrets().List(ns);
  if (!names.ok()) return Fail(std::string(names.status().message()));
  for (const std::string& name : *names) {
    absl::StatusOr<relay::secrets::SecretData> data = (*local)->secrets().Get(ns, name);
    if (!data.ok()) return Fail(absl::StrCat("reading secret ", ns, "/", name, ": ", data.status().message()));
    absl::Status created = (*target)->secrets().Create(ns, name, *data);
    if (created.ok()) {
      copied++;
    } else if (absl::IsAlreadyExists(created)) {
      absl::StatusOr<relay::secrets::SecretData> there = (*target)->secrets().Get(ns, name);
      if (there.ok() && *there == *data) {
        present++;
      } else {
        conflicts.push_back(absl::StrCat("secret ", ns, "/", name));
      }
    } else {
      return Fail(absl::StrCat("copying secret ", ns, "/", name, ": ", created.message()));
    }
  }
  std::cout << "copied " << copied << " record(s) and secret(s) of namespace " << ns << " from " << MgmtDir()
            << " to etcd (" << absl::StrJoin(etcd.endpoints, ",") << ", under " << etcd.prefix << "); " << present
            << " were there already\n";
  if (!conflicts.empty()) {
    std::cerr << "relayctl: etcd already holds different values for these, left as they are (another "
                 "installation's state under the same namespace?):\n";
    for (const std::string& conflict : conflicts) std::cerr << "  " << conflict << "\n";
    return 1;
  }
  std::cout << "start the replicas with --state=etcd and the same --namespace; the clusters keep their "
               "certificates\n";
  return 0;
}

int Push(const std::vector<std::string>& files) {
  std::string cluster = absl::GetFlag(FLAGS_cluster);
  if (cluster.empty()) return Fail("push needs --cluster NAME");
  v1::PushSnapshotRequest request;
  request.set_cluster(cluster);
  for (const std::string& file : files) {
    std::optional<std::string> content = ReadWholeFile(file);
    if (!content) return Fail(absl::StrCat("cannot read ", file));
    v1::Resource* resource = request.add_resources();
    resource->set_name(file.substr(file.rfind('/') + 1));
    resource->set_content(*std::move(content));
  }
  v1::PushSnapshotResponse response;
  grpc::Status status = AdminStub()->PushSnapshot(AdminContext().get(), request, &response);
  if (!status.ok()) return AdminFailure(status);
  std::cout << "snapshot version " << response.version() << " for cluster " << cluster << " ("
            << files.size() << " file" << (files.size() == 1 ? "" : "s") << ")\n";
  return 0;
}

// ---------------------------------------------------------------------------
// check

struct CheckRow {
  std::string check;
  bool ok;
  std::string detail;
};

void CheckCertificateRotation(const std::string& what, const std::string& chain_pem, double ratio,
                              absl::Time now, std::vector<CheckRow>& rows) {
  auto chain = relay::pki::ParseCertificateChainPem(chain_pem);
  if (!chain.ok()) {
    rows.push_back({what, false, std::string(chain.status().message())});
    return;
  }
  auto info = relay::pki::InspectCertificate((*chain)[0].get());
  if (!info.ok()) {
    rows.push_back({what, false, std::string(info.status().message())});
    return;
  }
  absl::StatusOr<absl::Time> due = relay::pki::RenewAt(*info, ratio);
  if (now > info->not_after) {
    rows.push_back({what, false, absl::StrCat("EXPIRED on ", relay::pki::FormatUtc(info->not_after))});
  } else if (due.ok() && now >= *due) {
    rows.push_back({what, false, absl::StrCat("past its rotation point (", relay::pki::FormatUtc(*due),
                                              "); expires in ", Ago(info->not_after - now))});
  } else {
    rows.push_back({what, true, absl::StrCat("expires in ", Ago(info->not_after - now), ", rotation at ",
                                             due.ok() ? relay::pki::FormatUtc(*due) : "?")});
  }
}

int Check() {
  std::vector<CheckRow> rows;
  absl::Time now = absl::Now();
  double ratio = absl::GetFlag(FLAGS_grace_period_ratio);
  std::string ns = absl::GetFlag(FLAGS_namespace);

  // 1. The server, through its admin socket.
  v1::ListClustersResponse clusters;
  grpc::Status listed = AdminStub()->ListClusters(AdminContext().get(), v1::ListClustersRequest(), &clusters);
  rows.push_back({"admin socket reachable", listed.ok(),
                  listed.ok() ? AdminSocket() : absl::StrCat(AdminSocket(), ": ", listed.error_message())});
  for (const v1::ClusterInfo& cluster : clusters.clusters()) {
    std::string name = absl::StrCat("cluster ", cluster.name());
    if (cluster.deregistered()) {
      rows.push_back({name, !cluster.connected(), cluster.connected() ? "deregistered but still connected"
                                                                      : "deregistered"});
      continue;
    }
    if (cluster.registered() && !cluster.connected()) {
      rows.push_back({name, false, "registered but not connected"});
    } else if (!cluster.registered() && cluster.connected()) {
      rows.push_back({name, false, "connected but not registered with this server's CA (own certificate?)"});
    } else if (cluster.registered()) {
      rows.push_back({name, true, "registered and connected"});
    }
    if (cluster.registered()) {
      relay::pki::CertificateInfo info;
      info.not_before = absl::FromUnixSeconds(cluster.cert_issued_unix());
      info.not_after = absl::FromUnixSeconds(cluster.cert_not_after_unix());
      info.serial_hex = cluster.serial();
      absl::StatusOr<absl::Time> due = relay::pki::RenewAt(info, ratio);
      bool past = due.ok() && now >= *due;
      rows.push_back({name + " certificate", !past,
                      past ? absl::StrCat("past its rotation point; expires ", relay::pki::FormatUtc(info.not_after))
                           : absl::StrCat("expires in ", Ago(info.not_after - now))});
    }
  }

  // 2. The management secrets.
  relay::config::MgmtServerValues mgmt_values;
  std::string server_chain, server_roots;
  if (auto mgmt = OpenStore(MgmtDir()); mgmt.ok()) {
    auto server = (*mgmt)->Get(ns, mgmt_values.tls_secret);
    auto root = (*mgmt)->Get(ns, mgmt_values.root_tls_secret);
    if (server.ok() && server->count("tls.crt")) {
      server_chain = server->at("tls.crt");
      CheckCertificateRotation("server certificate", server_chain, 0.5, now, rows);
    } else {
      rows.push_back({"server certificate", false, absl::StrCat("no ", mgmt_values.tls_secret, " in ", MgmtDir())});
    }
    if (root.ok() && root->count("ca.crt")) server_roots = root->at("ca.crt");
  }

  // 3. An agent's secrets, when given.
  std::string cluster = absl::GetFlag(FLAGS_cluster);
  if (!absl::GetFlag(FLAGS_secrets_dir).empty() || !cluster.empty()) {
    absl::StatusOr<relay::config::AgentValues> agent_values =
        relay::config::LoadAgentValues(absl::GetFlag(FLAGS_values));
    if (!agent_values.ok()) return Fail(std::string(agent_values.status().message()));
    auto workload = OpenStore(WorkloadDir(cluster));
    std::string agent_chain, agent_roots;
    if (workload.ok()) {
      auto client = (*workload)->Get(ns, agent_values->client_tls_secret);
      auto root = (*workload)->Get(ns, agent_values->root_tls_secret);
      if (client.ok() && client->count("tls.crt")) {
        agent_chain = client->at("tls.crt");
        CheckCertificateRotation("agent client certificate", agent_chain, ratio, now, rows);
      } else {
        rows.push_back({"agent client certificate", false, "no client certificate yet"});
      }
      if (root.ok() && root->count("ca.crt")) agent_roots = root->at("ca.crt");
      else if (client.ok() && client->count("ca.crt")) agent_roots = client->at("ca.crt");
    }
    // Does the agent trust the server, and the server the agent?
    if (!server_chain.empty() && !agent_roots.empty()) {
      auto chain = relay::pki::ParseCertificateChainPem(server_chain);
      auto roots = relay::pki::ParseCertificateChainPem(agent_roots);
      absl::Status trusted = chain.ok() && roots.ok()
                                 ? relay::pki::VerifyChain((*chain)[0].get(), relay::pki::Borrow(*chain),
                                                           relay::pki::Borrow(*roots), now,
                                                           relay::pki::Purpose::kServerAuth)
                                 : absl::InvalidArgumentError("unreadable certificates");
      if (trusted.ok()) trusted = relay::pki::CheckHost((*chain)[0].get(), agent_values->authority);
      rows.push_back({"agent trusts server", trusted.ok(),
                      trusted.ok() ? absl::StrCat("server certificate chains to the agent's root and names ",
                                                  agent_values->authority)
                                   : std::string(trusted.message())});
    }
    if (!agent_chain.empty() && !server_roots.empty()) {
      auto chain = relay::pki::ParseCertificateChainPem(agent_chain);
      auto roots = relay::pki::ParseCertificateChainPem(server_roots);
      absl::Status trusted = chain.ok() && roots.ok()
                                 ? relay::pki::VerifyChain((*chain)[0].get(), relay::pki::Borrow(*chain),
                                                           relay::pki::Borrow(*roots), now,
                                                           relay::pki::Purpose::kClientAuth)
                                 : absl::InvalidArgumentError("unreadable certificates");
      rows.push_back({"server trusts agent", trusted.ok(),
                      trusted.ok() ? "client certificate chains to the server's root"
                                   : std::string(trusted.message())});
    }
  }

  // 4. The relay port itself.
  std::string address = absl::GetFlag(FLAGS_server_address);
  if (!address.empty() && !server_roots.empty()) {
    auto channel = relay::grpc_tls::CreateChannel(address, relay::grpc_tls::ServerAuthCredentials(server_roots),
                                                  absl::GetFlag(FLAGS_authority));
    bool connected = channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));
    rows.push_back({"relay reachable over TLS", connected,
                    connected ? address : absl::StrCat(address, ": no TLS connection within 5s")});
  }

  bool all_ok = true;
  std::cout << std::left << std::setw(34) << "CHECK" << std::setw(8) << "STATUS" << "DETAIL\n";
  for (const CheckRow& row : rows) {
    all_ok = all_ok && row.ok;
    std::cout << std::setw(34) << row.check << std::setw(8) << (row.ok ? "ok" : "PROBLEM") << row.detail << "\n";
  }
  std::cout << (all_ok ? "all checks passed\n" : "problems found\n");
  return all_ok ? 0 : 1;
}

}  // namespace

namespace {

absl::StatusOr<std::string> TokenFor(relay::secrets::SecretStore& mgmt, const std::string& ns,
                                     const std::string& cluster, std::string* note) {
  absl::Duration ttl = absl::GetFlag(FLAGS_bootstrap_token_ttl);
  if (ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bootstrap_token_ttl=", absl::FormatDuration(ttl), " is not a positive duration (e.g. 1h)"));
  }
  if (ttl > absl::ZeroDuration()) {
    v1::CreateBootstrapTokenRequest request;
    request.set_cluster(cluster);
    request.set_ttl_seconds(absl::ToInt64Seconds(ttl));
    request.set_uses(1);
    v1::CreateBootstrapTokenResponse response;
    grpc::Status status = AdminStub()->CreateBootstrapToken(AdminContext().get(), request, &response);
    if (!status.ok()) return absl::UnavailableError(AdminFailureMessage(status));
    *note = absl::StrCat("single-use bootstrap token, expires ",
                         relay::pki::FormatUtc(absl::FromUnixSeconds(response.expires_unix())));
    return response.token();
  }
  relay::config::MgmtServerValues mgmt_values;
  ASSIGN_OR_RETURN(std::string shared,
                   relay::tokens::LoadToken(mgmt, relay::mgmt::TokenNamespace(mgmt_values, ns),
                                            mgmt_values.token_secret.name, mgmt_values.token_secret.key));
  *note = "shared identity token";
  // Lift a deregistration if the server is running; without it there is nothing to lift.
  v1::ClusterRequest request;
  request.set_cluster(cluster);
  v1::AdminResponse response;
  grpc::Status admitted = AdminStub()->AdmitCluster(AdminContext().get(), request, &response);
  if (!admitted.ok() && admitted.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return absl::Status(static_cast<absl::StatusCode>(admitted.error_code()), AdminFailureMessage(admitted));
  }
  return shared;
}

// One Secret as a Kubernetes manifest (data base64, as the API takes it).
// Without a namespace (`ns` empty) it goes where `kubectl apply` points (-n, or the
// context's namespace): the workload cluster's namespace need not be the server's.
void EmitSecret(YAML::Emitter& out, const std::string& ns, const std::string& name, const std::string& cluster,
                const std::map<std::string, std::string>& data) {
  out << YAML::BeginDoc << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "v1";
  out << YAML::Key << "kind" << YAML::Value << "Secret";
  out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << name;
  if (!ns.empty()) out << YAML::Key << "namespace" << YAML::Value << ns;
  out << YAML::Key << "labels" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "app.kubernetes.io/part-of" << YAML::Value << "relay";
  out << YAML::Key << "relay-cluster" << YAML::Value << cluster;
  out << YAML::EndMap << YAML::EndMap;
  out << YAML::Key << "type" << YAML::Value << "Opaque";
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  for (const auto& [key, value] : data) {
    out << YAML::Key << key << YAML::Value << absl::Base64Escape(value);
  }
  out << YAML::EndMap << YAML::EndMap;
}

// The seed's two copy steps (root ca.crt, then the token, into the workload cluster) as
// one manifest for `kubectl apply -f -`.
int SecretsExport() {
  std::string cluster = absl::GetFlag(FLAGS_cluster);
  if (absl::Status name = relay::ValidateClusterName(cluster); !name.ok()) {
    return Fail(cluster.empty() ? "secrets export needs --cluster NAME" : std::string(name.message()));
  }
  if (isatty(STDOUT_FILENO)) {
    return Fail("secrets export prints the identity token: pipe it (| kubectl apply -f -) or redirect it to a "
                "file, it is not shown on a terminal");
  }
  absl::StatusOr<relay::config::AgentValues> agent_values =
      relay::config::LoadAgentValues(absl::GetFlag(FLAGS_values));
  if (!agent_values.ok()) return Fail(std::string(agent_values.status().message()));
  const relay::kube::SecretBackend backend = absl::GetFlag(FLAGS_secrets);
  const std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  if (absl::Status flags = relay::kube::CheckSecretFlags(backend, kubeconfig); !flags.ok()) {
    return Fail(std::string(flags.message()));
  }
  absl::StatusOr<std::unique_ptr<relay::secrets::SecretStore>> mgmt =
      relay::kube::OpenSecretStore(backend, MgmtDir(), kubeconfig);
  if (!mgmt.ok()) return Fail(std::string(mgmt.status().message()));
  const std::string ns =
      relay::kube::NamespaceFor(absl::GetFlag(FLAGS_namespace), relay::FlagGiven("namespace"), backend, kubeconfig);
  relay::config::MgmtServerValues mgmt_values;
  absl::StatusOr<relay::secrets::SecretData> root = (*mgmt)->Get(ns, mgmt_values.root_tls_secret);
  if (!root.ok()) {
    return Fail(absl::StrCat(root.status().message(), " (in ",
                             relay::kube::DescribeSecretBackend(backend, MgmtDir(), kubeconfig),
                             "): start the server once, or point --secrets/--mgmt_secrets_dir/--kubeconfig at its "
                             "store"));
  }
  absl::StatusOr<std::string> ca = relay::secrets::GetKey(*root, ns, mgmt_values.root_tls_secret, "ca.crt");
  if (!ca.ok()) return Fail(std::string(ca.status().message()));
  std::string token_note;
  absl::StatusOr<std::string> token = TokenFor(**mgmt, ns, cluster, &token_note);
  if (!token.ok()) return Fail(std::string(token.status().message()));

  YAML::Emitter out;
  EmitSecret(out, "", agent_values->root_tls_secret, cluster, {{"ca.crt", *ca}});
  // tokenSecret.namespace of the agent's values, when it names one.
  EmitSecret(out, agent_values->token_secret.Namespace(""), agent_values->token_secret.name, cluster,
             {{agent_values->token_secret.key, *token}});
  std::cout << "# relay: the root CA and the " << token_note << " for cluster " << cluster
            << ", for the workload cluster's namespace (kubectl apply -n NAMESPACE -f -)\n"
            << out.c_str() << "\n";
  return std::cout.good() ? 0 : Fail("could not write the manifest to standard output");
}

}  // namespace

int main(int argc, char** argv) {
  relay::SetUsage("relayctl", kUsage);
  std::vector<char*> merged = relay::MergeRepeatedListFlags(argc, argv, {"server_san", "etcd_endpoints"});
  std::vector<char*> args = relay::ParseFlags(static_cast<int>(merged.size()), merged.data());
  relay::LogLevel level;
  if (relay::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) relay::SetLogLevel(level);
  std::vector<std::string> words(args.begin() + 1, args.end());
  auto usage = [] {
    std::cerr << kUsage << "\n  (run relayctl --help for the flags)\n";
    return 2;
  };
  if (words.empty()) return usage();
  const std::string& command = words[0];
  if (command == "install" && words.size() == 1) return Install();
  if (command == "register" && words.size() == 1) return Register();
  if (command == "certs" && words.size() == 2 && words[1] == "inspect") return CertsInspect();
  if (command == "clusters" && words.size() == 2 && words[1] == "list") return ClustersList();
  if (command == "clusters" && words.size() == 3 && words[1] == "deregister") return ClustersDeregister(words[2]);
  if (command == "registry" && words.size() == 2 && words[1] == "repair") return RegistryRepair();
  if (command == "state" && words.size() == 2 && words[1] == "migrate") return StateMigrate();
  if (command == "push" && words.size() >= 2) return Push({words.begin() + 1, words.end()});
  if (command == "check" && words.size() == 1) return Check();
  if (command == "secrets" && words.size() == 2 && words[1] == "export") return SecretsExport();
  if (command == "ca" && words.size() == 2 && words[1] == "rotate-intermediate") return CaRotateIntermediate();
  if (command == "ca" && words.size() == 2 && words[1] == "status") return CaStatus();
  if (command == "ca" && words.size() == 2 && words[1] == "rotate-root") return CaRotateRoot();
  if (command == "ca" && words.size() == 2 && words[1] == "stage") return CaStage();
  if (command == "token" && words.size() == 2 && words[1] == "rotate") return TokenRotate();
  if (command == "tokens" && words.size() == 2 && words[1] == "list") return TokensList();
  if (command == "tokens" && words.size() == 3 && words[1] == "revoke") return TokensRevoke(words[2]);
  std::cerr << "relayctl: unknown command \"" << absl::StrJoin(words, " ") << "\"\n";
  return usage();
}
