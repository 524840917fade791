#include "mgmt/registration_service.h"

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/names.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "pki/csr.h"
#include "tokens/bootstrap_tokens.h"
#include "tokens/identity_token.h"

namespace relay::mgmt {
namespace {

namespace v1 = ::relay::v1;

constexpr size_t kMaxCsrBytes = 16 * 1024;

// The refusal counter's reason for a status.
absl::string_view ReasonFor(const absl::Status& status) {
  std::string refusal = RefusalOf(status);
  if (refusal == kRefusalDeregistered) return "deregistered";
  if (refusal == kRefusalUnknownCertificate) return "unknown_certificate";
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated: return "bad_token";
    case absl::StatusCode::kInvalidArgument: return "bad_csr";
    case absl::StatusCode::kPermissionDenied: return "identity_mismatch";
    case absl::StatusCode::kAlreadyExists: return "name_in_use";
    case absl::StatusCode::kFailedPrecondition: return "ca_disabled";
    default: return "other";
  }
}

// The token of `authorization: Bearer <token>`, or why there is none usable.
absl::StatusOr<std::string> BearerToken(const grpc::CallbackServerContext& context) {
  auto header = context.client_metadata().find("authorization");
  if (header == context.client_metadata().end()) {
    return absl::UnauthenticatedError(
        "no identity token: send it as 'authorization: Bearer <token>' (the agent reads it from "
        "relay-identity-token-secret)");
  }
  absl::string_view value(header->second.data(), header->second.size());
  if (!absl::StartsWith(value, "Bearer ")) {
    return absl::UnauthenticatedError(
        "the authorization header is not 'Bearer <token>': send the identity token from "
        "relay-identity-token-secret as 'authorization: Bearer <token>'");
  }
  if (value.size() > 7 + tokens::kMaxTokenBytes) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the identity token is longer than ", tokens::kMaxTokenBytes,
        " bytes, so it cannot be a relay token: check that the agent's relay-identity-token-secret holds the "
        "token (relayctl register)"));
  }
  std::string token(value.substr(7));
  if (token.empty()) return absl::UnauthenticatedError("the identity token in 'authorization: Bearer' is empty");
  return token;
}

absl::Status CaDisabled() {
  return absl::FailedPreconditionError(
      "this server signs no certificates (glooMgmtServer.relay.disableCa): give the agent its own client "
      "certificate in relay-client-tls-secret");
}

}  // namespace

grpc::ServerUnaryReactor* RegistrationService::Register(grpc::CallbackServerContext* context,
                                                        const v1::RegisterRequest* request,
                                                        v1::CertificateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time now = absl::Now();
  const std::string cluster = request->cluster();
  // Shared by the paths below, some of which finish on other threads.
  auto refuse = [this, reactor, context, cluster, peer = context->peer()](const absl::Status& status,
                                                                           absl::string_view reason = "") {
    if (reason.empty()) reason = ReasonFor(status);
    core_->metrics().certificates_refused.Increment({std::string(reason)});
    LogWarning("register_refused", {{"cluster", cluster.substr(0, 64)}, {"reason", std::string(reason)}, {"peer", peer}});
    reactor->Finish(ToGrpc(status, context));
    return reactor;
  };
  auto answer = [this, reactor, response, cluster](const pki::Issuer::IssuedPem& issued) {
    core_->metrics().certificates_issued.Increment({"register"});
    LogInfo("cluster_registered", {{"cluster", cluster}, {"serial", issued.serial_hex}});
    *response = core_->Response(issued);
    reactor->Finish(grpc::Status::OK);
  };

  if (core_->signer() == nullptr) return refuse(CaDisabled());
  // Before anything else (the token too): one source may not create cluster names, or
  // guess tokens, faster than the limit. Refusals are counted, and logged once per
  // episode rather than each, so a flood cannot fill the log either.
  const std::string source = SourceRateLimiter::SourceOf(context->peer());
  SourceRateLimiter::Decision admitted = registrations_per_source_.Take(source, now);
  if (!admitted.allowed) {
    core_->metrics().certificates_refused.Increment({"rate_limited"});
    if (admitted.newly_limited) {
      LogWarning("registrations_limited",
                 {{"source", source},
                  {"per_second", absl::StrCat(core_->options().registrations_per_second_per_source)},
                  {"burst", absl::StrCat(core_->options().registration_burst_per_source)}});
    }
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 absl::StrCat("too many registrations from ", source, ": at most ",
                                              core_->options().registrations_per_second_per_source,
                                              " a second (--registrations_per_second_per_source); retry later")));
    return reactor;
  }
  absl::StatusOr<std::string> token = BearerToken(*context);
  if (!token.ok()) {
    bool sent = context->client_metadata().count("authorization") > 0;
    return refuse(token.status(), sent ? "bad_token" : "missing_token");
  }
  if (absl::Status name = ValidateClusterName(cluster); !name.ok()) return refuse(name, "bad_cluster_name");
  if (request->csr_pem().size() > kMaxCsrBytes) {
    return refuse(absl::InvalidArgumentError(absl::StrCat("CSR is larger than ", kMaxCsrBytes, " bytes")));
  }
  if (absl::Status status = core_->registry().CheckNotDeregistered(cluster); !status.ok()) return refuse(status);
  bool shared = core_->IsSharedToken(*token);
  if (!shared && !absl::StartsWith(*token, tokens::kBootstrapTokenPrefix)) {
    return refuse(absl::UnauthenticatedError(
        "identity token is not valid: copy the current relay-identity-token-secret from the management cluster "
        "(relayctl register)"));
  }
  // The CSR, checked against the identity policy (the name asked for) before anything
  // is issued.
  auto issue = [core = core_, cluster, now, csr_pem = request->csr_pem()]() -> absl::StatusOr<pki::Issuer::IssuedPem> {
    ASSIGN_OR_RETURN(pki::VerifiedCsr csr, pki::ParseAndVerifyCsrPem(csr_pem));
    RETURN_IF_ERROR(CheckCsrIdentity(csr.cluster, cluster));
    return core->signer()->IssueClient(csr, now, core->options().values.client_cert_ttl);
  };

  if (shared) {
    RegistrationRules rules;
    // Live on this replica, or on another one sharing the store.
    rules.live_stream = hub_->Connected(cluster, nullptr) ||
                        (core_->connections() && core_->connections()->HeldElsewhere(cluster).has_value());
    rules.strict = core_->options().strict_reregistration;
    // Checked before the CSR is verified and signed: refusing a live name costs no crypto.
    absl::StatusOr<RegistrationKind> kind = core_->registry().CheckRegistration(cluster, now, rules);
    if (!kind.ok()) return refuse(kind.status());
    absl::StatusOr<pki::Issuer::IssuedPem> issued = issue();
    if (!issued.ok()) return refuse(issued.status());
    const std::string serial = issued->serial_hex;
    const absl::Time not_after = issued->not_after;
    const bool replaces = *kind == RegistrationKind::kReplacesValid;
    core_->registry().RecordRegisteredAsync(
        cluster, serial, not_after, now, rules,
        [this, refuse, answer, cluster, replaces, issued = *std::move(issued)](absl::Status recorded) {
          if (!recorded.ok()) {
            refuse(recorded, absl::IsInternal(recorded) || absl::IsUnavailable(recorded) ? "not_recorded" : "");
            return;
          }
          if (replaces) Reregistered(cluster, issued.serial_hex);
          answer(issued);
        });
    return reactor;
  }

  // A bootstrap token bound to the cluster: redeemed and recorded together, which waits
  // on the store (rare: once per cluster that enrols this way), so off this thread.
  core_->work().Post([this, refuse, answer, issue, cluster, now, token = *std::move(token)] {
    pki::Issuer::IssuedPem issued;
    RegistrationRules bound;
    bound.bound_token = true;
    bool replaces = false;
    absl::Status status = core_->bootstrap_tokens().Redeem(token, cluster, now, [&]() -> absl::Status {
      ASSIGN_OR_RETURN(RegistrationKind kind, core_->registry().CheckRegistration(cluster, now, bound));
      replaces = kind == RegistrationKind::kReplacesValid;
      ASSIGN_OR_RETURN(issued, issue());
      return core_->registry().RecordRegistered(cluster, issued.serial_hex, issued.not_after, now, bound);
    });
    if (!status.ok()) {
      refuse(status);
      return;
    }
    if (replaces) Reregistered(cluster, issued.serial_hex);
    answer(issued);
  });
  return reactor;
}

grpc::ServerUnaryReactor* RegistrationService::Renew(grpc::CallbackServerContext* context,
                                                     const v1::RenewRequest* request,
                                                     v1::CertificateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time now = absl::Now();
  auto refuse = [this, reactor, context](const std::string& cluster, const absl::Status& status) {
    absl::string_view reason = ReasonFor(status);
    core_->metrics().certificates_refused.Increment({std::string(reason)});
    LogWarning("renew_refused",
               {{"cluster", cluster}, {"reason", std::string(reason)}, {"error", std::string(status.message())}});
    reactor->Finish(ToGrpc(status, context));
  };
  if (core_->signer() == nullptr) {
    refuse("", absl::FailedPreconditionError(
                   "this server signs no certificates (disableCa): renew the client certificate with your own CA"));
    return reactor;
  }
  // Identified at once for the current serial, else once a pending one became current
  // (on a store thread); the rest runs wherever that answer arrives.
  identifier_->Identify(
      grpc_tls::PeerOf(*context), now,
      [this, refuse, reactor, response, now, csr_pem = request->csr_pem()](absl::StatusOr<CallerIdentity> caller) {
        if (!caller.ok()) {
          refuse("", caller.status());
          return;
        }
        if (csr_pem.size() > kMaxCsrBytes) {
          refuse(caller->cluster,
                 absl::InvalidArgumentError(absl::StrCat("CSR is larger than ", kMaxCsrBytes, " bytes")));
          return;
        }
        absl::StatusOr<pki::VerifiedCsr> csr = pki::ParseAndVerifyCsrPem(csr_pem);
        if (!csr.ok()) {
          refuse(caller->cluster, csr.status());
          return;
        }
        if (absl::Status allowed = CheckCsrIdentity(csr->cluster, caller->cluster); !allowed.ok()) {
          refuse(caller->cluster, allowed);
          return;
        }
        absl::StatusOr<pki::Issuer::IssuedPem> issued =
            core_->signer()->IssueClient(*csr, now, core_->options().values.client_cert_ttl);
        if (!issued.ok()) {
          refuse(caller->cluster, issued.status());
          return;
        }
        const std::string cluster = caller->cluster;
        const std::string serial = issued->serial_hex;
        const absl::Time not_after = issued->not_after;
        core_->registry().RecordIssuedAsync(
            cluster, serial, not_after, now,
            [this, refuse, reactor, response, caller = *std::move(caller),
             issued = *std::move(issued)](absl::Status recorded) {
              if (!recorded.ok()) {
                refuse(caller.cluster, recorded);
                return;
              }
              core_->metrics().certificates_issued.Increment({"renew"});
              LogInfo("certificate_renewed",
                      {{"cluster", caller.cluster}, {"old_serial", caller.serial}, {"serial", issued.serial_hex}});
              *response = core_->Response(issued);
              reactor->Finish(grpc::Status::OK);
            });
      });
  return reactor;
}

void RegistrationService::Reregistered(const std::string& cluster, const std::string& serial) {
  core_->metrics().reregistrations.Increment();
  LogWarning("cluster_reregistered",
             {{"cluster", cluster}, {"serial", serial}, {"note", "the previous certificates of the cluster are revoked"}});
  hub_->CloseClusterUnlessSerial(cluster, serial, "the cluster registered again: this certificate is revoked",
                                 grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "certificate revoked"));
}

}  // namespace relay::mgmt
