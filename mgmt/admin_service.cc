#include "mgmt/admin_service.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/names.h"
#include "mgmt/signing_authority.h"
#include "pki/certificate.h"
#include "pki/pem.h"

namespace relay::mgmt {

namespace v1 = ::relay::v1;

grpc::Status AdminService::ListClusters(grpc::ServerContext*, const v1::ListClustersRequest*,
                                        v1::ListClustersResponse* response) {
  for (const ClusterRecord& record : core_->registry().List()) {
    v1::ClusterInfo* info = response->add_clusters();
    info->set_name(record.name);
    info->set_registered(!record.current_serial.empty());
    info->set_deregistered(record.deregistered);
    info->set_serial(record.current_serial);
    info->set_cert_not_after_unix(absl::ToUnixSeconds(record.not_after));
    info->set_cert_issued_unix(absl::ToUnixSeconds(record.issued_at));
    info->set_snapshot_version(record.snapshot_version);
    info->set_acked_version(record.acked_version);
    std::string serial;
    bool connected = hub_->Connected(record.name, &serial);
    if (!connected && core_->connections()) {
      if (auto holder = core_->connections()->HeldElsewhere(record.name)) {
        connected = true;
        serial = holder->serial;
      }
    }
    info->set_connected(connected);
    info->set_connected_serial(serial);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::DeregisterCluster(grpc::ServerContext*, const v1::ClusterRequest* request,
                                             v1::AdminResponse* response) {
  const std::string& cluster = request->cluster();
  if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
  if (absl::Status status = core_->registry().Deregister(cluster); !status.ok()) return ToGrpc(status);
  hub_->CloseCluster(cluster, "cluster deregistered by an operator",
                     grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "cluster deregistered"));
  core_->metrics().ForgetCluster(cluster);
  LogInfo("cluster_deregistered", {{"cluster", cluster}});
  response->set_message(absl::StrCat("cluster ", cluster, " deregistered; its streams are closed"));
  return grpc::Status::OK;
}

grpc::Status AdminService::AdmitCluster(grpc::ServerContext*, const v1::ClusterRequest* request,
                                        v1::AdminResponse* response) {
  const std::string& cluster = request->cluster();
  if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
  if (absl::Status status = core_->registry().Admit(cluster); !status.ok()) return ToGrpc(status);
  LogInfo("cluster_admitted", {{"cluster", cluster}});
  response->set_message(
      absl::StrCat("cluster ", cluster, " may register (its next Register may replace a certificate that is still valid)"));
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateBootstrapToken(grpc::ServerContext*, const v1::CreateBootstrapTokenRequest* request,
                                                v1::CreateBootstrapTokenResponse* response) {
  absl::Time now = absl::Now();
  int uses = request->uses() > 0 ? request->uses() : 1;
  absl::StatusOr<std::string> token =
      core_->bootstrap_tokens().Create(request->cluster(), absl::Seconds(request->ttl_seconds()), uses, now);
  if (!token.ok()) return ToGrpc(token.status());
  if (absl::Status admitted = core_->registry().Admit(request->cluster()); !admitted.ok()) return ToGrpc(admitted);
  LogInfo("bootstrap_token_created",
          {{"cluster", request->cluster()}, {"ttl_seconds", absl::StrCat(request->ttl_seconds())}});
  response->set_token(*token);
  response->set_expires_unix(absl::ToUnixSeconds(now + absl::Seconds(request->ttl_seconds())));
  return grpc::Status::OK;
}

grpc::Status AdminService::PushSnapshot(grpc::ServerContext*, const v1::PushSnapshotRequest* request,
                                        v1::PushSnapshotResponse* response) {
  const std::string& cluster = request->cluster();
  if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return ToGrpc(name);
  std::vector<SnapshotResource> resources;
  for (const v1::Resource& resource : request->resources()) resources.push_back({resource.name(), resource.content()});
  absl::StatusOr<int64_t> version = core_->registry().PushSnapshot(cluster, resources);
  if (!version.ok()) return ToGrpc(version.status());
  core_->metrics().snapshot_version.Set({cluster}, *version);
  LogInfo("snapshot_pushed",
          {{"cluster", cluster}, {"version", absl::StrCat(*version)}, {"resources", absl::StrCat(resources.size())}});
  // Built here (this thread may read the store), then handed to the stream.
  absl::StatusOr<v1::ServerMessage> snapshot = RelayHub::SnapshotMessage(core_->registry(), cluster);
  if (snapshot.ok()) hub_->Send(cluster, *std::move(snapshot));
  response->set_version(*version);
  return grpc::Status::OK;
}

grpc::Status AdminService::RotateIntermediate(grpc::ServerContext*, const v1::RotateIntermediateRequest*,
                                              v1::AdminResponse* response) {
  absl::StatusOr<pki::CertificateInfo> rotated = core_->RotateIntermediate(absl::Now(), "operator request");
  if (!rotated.ok()) return ToGrpc(rotated.status());
  response->set_message(absl::StrCat("new intermediate ", rotated->serial_hex, " valid until ",
                                     pki::FormatUtc(rotated->not_after),
                                     "; certificates issued from now on chain to it, the previous one is kept "
                                     "until it expires"));
  return grpc::Status::OK;
}

grpc::Status AdminService::StageIntermediate(grpc::ServerContext*, const v1::StageIntermediateRequest* request,
                                             v1::AdminResponse* response) {
  absl::StatusOr<pki::CertificateInfo> staged =
      core_->StageIntermediate(request->certificate_pem(), request->key_pem(), absl::Now());
  if (!staged.ok()) return ToGrpc(staged.status());
  response->set_message(absl::StrCat("intermediate ", staged->serial_hex, " (valid until ",
                                     pki::FormatUtc(staged->not_after),
                                     ") installed; the previous one is kept until it expires"));
  return grpc::Status::OK;
}

grpc::Status AdminService::RotateRoot(grpc::ServerContext*, const v1::RotateRootRequest* request,
                                      v1::AdminResponse* response) {
  absl::StatusOr<std::string> done =
      core_->RotateRoot(request->force(), absl::Now(), {request->certificate_pem(), request->key_pem()});
  if (!done.ok()) return ToGrpc(done.status());
  response->set_message(*done);
  return grpc::Status::OK;
}

grpc::Status AdminService::CaStatus(grpc::ServerContext*, const v1::CaStatusRequest*, v1::CaStatusResponse* response) {
  auto add = [&](const std::string& role, const X509* cert, absl::Time rotation_due) {
    absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(cert);
    if (!info.ok()) return;
    v1::CaInfo* ca = response->add_cas();
    ca->set_role(role);
    ca->set_subject(info->subject);
    ca->set_serial(info->serial_hex);
    ca->set_not_before_unix(absl::ToUnixSeconds(info->not_before));
    ca->set_not_after_unix(absl::ToUnixSeconds(info->not_after));
    if (rotation_due != absl::InfinitePast()) ca->set_rotation_due_unix(absl::ToUnixSeconds(rotation_due));
  };
  if (auto roots = pki::ParseCertificateChainPem(core_->root_bundle_pem()); roots.ok()) {
    for (const auto& root : *roots) add("root", root.get(), absl::InfinitePast());
  }
  if (std::shared_ptr<const pki::Issuer> signer = core_->signer()) {
    absl::StatusOr<pki::CertificateInfo> info = pki::InspectCertificate(signer->certificate());
    add("intermediate", signer->certificate(),
        info.ok() ? IntermediateRotationDue(*info, core_->options().values.client_cert_ttl) : absl::InfinitePast());
  }
  if (auto retired = pki::ParseCertificateChainPem(core_->authority().RetiredPem(absl::Now())); retired.ok()) {
    for (const auto& cert : *retired) add("retired-intermediate", cert.get(), absl::InfinitePast());
  }
  const std::string digest = core_->trust_bundle_digest();
  response->set_trust_bundle_digest(digest);
  for (const ClusterRecord& record : core_->registry().List()) {
    if (record.deregistered) continue;
    response->set_clusters(response->clusters() + 1);
    if (record.trust_bundle == digest) {
      response->set_clusters_with_bundle(response->clusters_with_bundle() + 1);
    } else if (response->without_bundle_size() < 50) {
      response->add_without_bundle(record.name);
    }
  }
  if (auto root = core_->state().secrets().Get(core_->options().ns, core_->options().values.root_tls_secret); root.ok()) {
    for (auto [key, role] : {std::pair{kCrossCertificatesKey, "cross-certificate"}, std::pair{kRetiredRootsKey, "retired-root"}}) {
      if (!root->count(key)) continue;
      if (auto certs = pki::ParseCertificateChainPem(root->at(key)); certs.ok()) {
        for (const auto& cert : *certs) add(role, cert.get(), absl::InfinitePast());
      }
    }
  }
  if (absl::StatusOr<Core::RootRotationReport> report = core_->ReportRootRotation(absl::Now()); report.ok()) {
    v1::RootRotationStatus* rotation = response->mutable_root_rotation();
    auto unix_or_zero = [](absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(t); };
    rotation->set_phase(std::string(PhaseName(report->rotation.phase)));
    rotation->set_previous_serial(report->rotation.previous_serial);
    rotation->set_next_serial(report->rotation.next_serial);
    rotation->set_started_unix(unix_or_zero(report->rotation.started_at));
    rotation->set_switched_unix(unix_or_zero(report->rotation.switched_at));
    rotation->set_finished_unix(unix_or_zero(report->rotation.finished_at));
    rotation->set_gate(report->gate);
    rotation->set_clusters(report->progress.clusters);
    rotation->set_clusters_ready(report->progress.ready);
    for (const std::string& name : report->progress.waiting) rotation->add_waiting(name);
  }
  if (auto server = core_->state().secrets().Get(core_->options().ns, core_->options().values.tls_secret); server.ok()) {
    if (auto chain = pki::ParseCertificateChainPem((*server)["tls.crt"]); chain.ok() && !chain->empty()) {
      add("server", (*chain)[0].get(), absl::InfinitePast());
    }
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RotateSharedToken(grpc::ServerContext*, const v1::RotateSharedTokenRequest* request,
                                             v1::AdminResponse* response) {
  absl::StatusOr<absl::Time> until =
      core_->RotateSharedToken(absl::Seconds(request->overlap_seconds()), absl::Now());
  if (!until.ok()) return ToGrpc(until.status());
  response->set_message(absl::StrCat(
      "new shared token stored in ", TokenNamespace(core_->options().values, core_->options().ns), "/",
      core_->options().values.token_secret.name, "; the previous one is accepted until ", pki::FormatUtc(*until),
      ": give workload clusters that may still register the new one (relayctl secrets export)"));
  return grpc::Status::OK;
}

grpc::Status AdminService::ListBootstrapTokens(grpc::ServerContext*, const v1::ListBootstrapTokensRequest*,
                                               v1::ListBootstrapTokensResponse* response) {
  absl::StatusOr<std::vector<tokens::BootstrapTokenRecord>> live = core_->bootstrap_tokens().List(absl::Now());
  if (!live.ok()) return ToGrpc(live.status());
  for (const tokens::BootstrapTokenRecord& record : *live) {
    v1::BootstrapTokenInfo* info = response->add_tokens();
    info->set_hash_prefix(record.hash.substr(0, 12));
    info->set_cluster(record.cluster);
    info->set_expires_unix(absl::ToUnixSeconds(record.expires));
    info->set_uses_left(record.uses_left);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RevokeBootstrapToken(grpc::ServerContext*, const v1::RevokeBootstrapTokenRequest* request,
                                                v1::AdminResponse* response) {
  absl::StatusOr<std::string> cluster = core_->bootstrap_tokens().Revoke(request->hash_prefix());
  if (!cluster.ok()) return ToGrpc(cluster.status());
  LogInfo("bootstrap_token_revoked", {{"cluster", *cluster}, {"hash_prefix", request->hash_prefix()}});
  response->set_message(absl::StrCat("bootstrap token ", request->hash_prefix(), " for cluster ", *cluster,
                                     " revoked: it can no longer register"));
  return grpc::Status::OK;
}

}  // namespace relay::mgmt
