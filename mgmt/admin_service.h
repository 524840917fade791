#ifndef RELAY_MGMT_ADMIN_SERVICE_H_
#define RELAY_MGMT_ADMIN_SERVICE_H_

// The operator's API, on the admin Unix socket (mode 0600, not on the network): list
// clusters, deregister and admit them, make bootstrap tokens, push snapshots. On
// gRPC's sync API: its threads may wait on the state store.

#include "api/relay/v1/relay.grpc.pb.h"
#include "mgmt/core.h"
#include "mgmt/relay_hub.h"

namespace relay::mgmt {

class AdminService final : public relay::v1::Admin::Service {
 public:
  AdminService(Core* core, RelayHub* hub) : core_(core), hub_(hub) {}

  grpc::Status ListClusters(grpc::ServerContext*, const relay::v1::ListClustersRequest*,
                            relay::v1::ListClustersResponse* response) override;
  grpc::Status DeregisterCluster(grpc::ServerContext*, const relay::v1::ClusterRequest* request,
                                 relay::v1::AdminResponse* response) override;
  grpc::Status AdmitCluster(grpc::ServerContext*, const relay::v1::ClusterRequest* request,
                            relay::v1::AdminResponse* response) override;
  grpc::Status CreateBootstrapToken(grpc::ServerContext*, const relay::v1::CreateBootstrapTokenRequest* request,
                                    relay::v1::CreateBootstrapTokenResponse* response) override;
  grpc::Status RotateIntermediate(grpc::ServerContext*, const relay::v1::RotateIntermediateRequest* request,
                                  relay::v1::AdminResponse* response) override;
  grpc::Status StageIntermediate(grpc::ServerContext*, const relay::v1::StageIntermediateRequest* request,
                                 relay::v1::AdminResponse* response) override;
  grpc::Status RotateRoot(grpc::ServerContext*, const relay::v1::RotateRootRequest* request,
                          relay::v1::AdminResponse* response) override;
  grpc::Status CaStatus(grpc::ServerContext*, const relay::v1::CaStatusRequest* request,
                        relay::v1::CaStatusResponse* response) override;
  grpc::Status RotateSharedToken(grpc::ServerContext*, const relay::v1::RotateSharedTokenRequest* request,
                                 relay::v1::AdminResponse* response) override;
  grpc::Status ListBootstrapTokens(grpc::ServerContext*, const relay::v1::ListBootstrapTokensRequest* request,
                                   relay::v1::ListBootstrapTokensResponse* response) override;
  grpc::Status RevokeBootstrapToken(grpc::ServerContext*, const relay::v1::RevokeBootstrapTokenRequest* request,
                                    relay::v1::AdminResponse* response) override;
  grpc::Status PushSnapshot(grpc::ServerContext*, const relay::v1::PushSnapshotRequest* request,
                            relay::v1::PushSnapshotResponse* response) override;

 private:
  Core* const core_;
  RelayHub* const hub_;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_ADMIN_SERVICE_H_
