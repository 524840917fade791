#include "mgmt/service_testing.h"

#include "common/grpc_tls.h"
#include "common/refusal.h"
#include "pki/csr.h"
#include "pki/keys.h"
#include "pki/pem.h"
#include "state/state_store.h"

namespace relay::mgmt::testing {
namespace {

constexpr const char* kAuthority = config::kDefaultAuthority;

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
}

std::string Refusal(const grpc::ClientContext& context) {
  auto trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRefusalMetadataKey);
  return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
}

}  // namespace

std::unique_ptr<ServicesUnderTest> ServicesUnderTest::Start(ServerOptions options) {
  std::unique_ptr<ServicesUnderTest> services(new ServicesUnderTest);
  std::unique_ptr<state::StateStore> state = state::NewMemoryStateStore();
  absl::StatusOr<ManagementPki> pki = EnsureManagementPki(state->secrets(), Core::PkiOptions(options), absl::Now());
  if (!pki.ok()) return nullptr;
  services->root_pem_ = pki->root_bundle_pem;
  services->token_ = pki->token;
  absl::StatusOr<secrets::SecretData> server_secret =
      state->secrets().Get(options.ns, options.values.tls_secret);
  if (!server_secret.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<ClusterRegistry>> registry = ClusterRegistry::Load(state.get(), options.ns);
  if (!registry.ok()) return nullptr;
  services->core_ = std::make_unique<Core>(std::move(options), std::move(state), *std::move(pki), *std::move(registry));
  Core* core = services->core_.get();
  services->hub_ = std::make_unique<RelayHub>(core);
  services->identifier_ = std::make_unique<CallerIdentifier>(&core->authority(), &core->registry());
  services->relay_ = std::make_unique<RelayService>(core, services->hub_.get(), services->identifier_.get());
  services->registration_ =
      std::make_unique<RegistrationService>(core, services->hub_.get(), services->identifier_.get());
  services->admin_ = std::make_unique<AdminService>(core, services->hub_.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0",
                           grpc_tls::RelayServerCredentialsFromPem((*server_secret)["tls.key"],
                                                                   (*server_secret)["tls.crt"], services->root_pem_),
                           &services->port_);
  builder.RegisterService(services->relay_.get());
  builder.RegisterService(services->registration_.get());
  services->server_ = builder.BuildAndStart();
  if (!services->server_ || services->port_ == 0) return nullptr;
  return services;
}

ServicesUnderTest::~ServicesUnderTest() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

std::shared_ptr<grpc::Channel> ServicesUnderTest::ServerAuthChannel() const {
  return grpc_tls::CreateChannel(address(), grpc_tls::ServerAuthCredentials(root_pem_), kAuthority);
}

std::shared_ptr<grpc::Channel> ServicesUnderTest::MutualTlsChannel(const std::string& key_pem,
                                                                   const std::string& chain_pem) const {
  return grpc_tls::CreateChannel(address(), grpc_tls::MutualTlsCredentials(root_pem_, key_pem, chain_pem),
                                 kAuthority);
}

ServicesUnderTest::Registered ServicesUnderTest::Register(const std::string& cluster, const std::string& token,
                                                          const std::string& csr_cluster) {
  Registered registered;
  pki::UniquePtr<EVP_PKEY> key = *pki::GenerateKey();
  relay::v1::RegisterRequest request;
  request.set_cluster(cluster);
  request.set_csr_pem(*pki::CreateCsrPem(key.get(), csr_cluster.empty() ? cluster : csr_cluster));
  grpc::ClientContext context;
  SetDeadline(&context);
  context.AddMetadata("authorization", "Bearer " + (token.empty() ? token_ : token));
  relay::v1::CertificateResponse response;
  registered.status = relay::v1::Registration::NewStub(ServerAuthChannel())->Register(&context, request, &response);
  registered.refusal = Refusal(context);
  registered.credentials = {*pki::PrivateKeyToPem(key.get()), response.certificate_chain_pem(), response.serial()};
  return registered;
}

ServicesUnderTest::Registered ServicesUnderTest::Renew(const Credentials& current, const std::string& csr_cluster) {
  Registered renewed;
  pki::UniquePtr<EVP_PKEY> key = *pki::GenerateKey();
  relay::v1::RenewRequest request;
  request.set_csr_pem(*pki::CreateCsrPem(key.get(), csr_cluster));
  grpc::ClientContext context;
  SetDeadline(&context);
  relay::v1::CertificateResponse response;
  renewed.status = relay::v1::Registration::NewStub(MutualTlsChannel(current.key_pem, current.chain_pem))
                       ->Renew(&context, request, &response);
  renewed.refusal = Refusal(context);
  renewed.credentials = {*pki::PrivateKeyToPem(key.get()), response.certificate_chain_pem(), response.serial()};
  return renewed;
}

}  // namespace relay::mgmt::testing
