// Issuance speed: key generation, CSR parse + verify, and the whole client-certificate
// path (parse, verify, build, sign, encode). Run:
//   tools/bazel run -c opt //pki:ca_benchmark
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "pki/ca.h"
#include "pki/csr.h"
#include "pki/keys.h"

namespace relay::pki {
namespace {

struct Fixture {
  std::unique_ptr<Issuer> issuer;
  std::string csr_pem;

  static Fixture& Get() {
    static Fixture* fixture = [] {
      auto* f = new Fixture;
      absl::Time now = absl::Now();
      UniquePtr<EVP_PKEY> root_key = *GenerateKey();
      UniquePtr<X509> root =
          *CreateSelfSignedCertificate(root_key.get(), RootCaSpec("bench-root", now, absl::Hours(24)));
      std::unique_ptr<Issuer> root_issuer = *Issuer::Create(std::move(root), std::move(root_key), now);
      UniquePtr<EVP_PKEY> key = *GenerateKey();
      UniquePtr<X509> intermediate =
          *root_issuer->Issue(key.get(), IntermediateCaSpec("bench-signing", now, absl::Hours(24)));
      f->issuer = *Issuer::Create(std::move(intermediate), std::move(key), now);
      UniquePtr<EVP_PKEY> agent_key = *GenerateKey();
      f->csr_pem = *CreateCsrPem(agent_key.get(), "cluster-1");
      return f;
    }();
    return *fixture;
  }
};

void BM_GenerateKey(benchmark::State& state) {
  KeyType type = static_cast<KeyType>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(GenerateKey(type));
  state.SetLabel(KeyTypeName(type));
  state.counters["keys/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GenerateKey)->Arg(static_cast<int>(KeyType::kEcdsaP256))
    ->Arg(static_cast<int>(KeyType::kRsa2048));

void BM_CsrParseAndVerify(benchmark::State& state) {
  const std::string& pem = Fixture::Get().csr_pem;
  for (auto _ : state) {
    auto csr = ParseAndVerifyCsrPem(pem);
    if (!csr.ok()) state.SkipWithError("CSR did not verify");
    benchmark::DoNotOptimize(csr);
  }
  state.counters["csrs/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CsrParseAndVerify);

void BM_IssueClientFromCsr(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  absl::Time now = absl::Now();
  for (auto _ : state) {
    auto issued = f.issuer->IssueClientFromCsrPem(f.csr_pem, "", now, absl::Hours(24 * 30));
    if (!issued.ok()) state.SkipWithError("issue failed");
    benchmark::DoNotOptimize(issued);
  }
  state.counters["certs/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IssueClientFromCsr);

}  // namespace
}  // namespace relay::pki
