#ifndef RELAY_MGMT_REGISTRATION_SERVICE_H_
#define RELAY_MGMT_REGISTRATION_SERVICE_H_

// Register (first contact, with the shared token or a bootstrap token) and Renew (with
// the current certificate), on gRPC's callback API. The CPU work (checks, CSR verify,
// signing) runs inline; the call finishes from the state store's thread once the
// record is durable, so no gRPC thread waits on the disk. (On the sync API the thread
// hand-offs and blocked threads cost ~40% more server CPU per certificate:
// docs/BENCHMARKS.md.) A bootstrap token's redemption, which waits on the store, runs
// on the work queue.

#include "api/relay/v1/relay.grpc.pb.h"
#include "mgmt/caller_identity.h"
#include "mgmt/core.h"
#include "mgmt/relay_hub.h"
#include "mgmt/source_rate_limiter.h"

namespace relay::mgmt {

class RegistrationService final : public relay::v1::Registration::CallbackService {
 public:
  RegistrationService(Core* core, RelayHub* hub, CallerIdentifier* identifier)
      : core_(core),
        hub_(hub),
        identifier_(identifier),
        registrations_per_source_(core->options().registrations_per_second_per_source,
                                  core->options().registration_burst_per_source) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context, const relay::v1::RegisterRequest* request,
                                     relay::v1::CertificateResponse* response) override;
  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* context, const relay::v1::RenewRequest* request,
                                  relay::v1::CertificateResponse* response) override;

 private:
  // A Register replaced a still valid certificate: its serials are refused from now on,
  // and a stream still open with one of them is closed.
  void Reregistered(const std::string& cluster, const std::string& serial);

  Core* const core_;
  RelayHub* const hub_;
  CallerIdentifier* const identifier_;
  SourceRateLimiter registrations_per_source_;
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_REGISTRATION_SERVICE_H_
