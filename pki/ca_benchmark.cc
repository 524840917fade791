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

// The floor under issuance: one ECDSA P-256 verify (the CSR) plus one sign (the
// certificate) over certificate-sized input, with keys already loaded.
void BM_CryptoBoundVerifyPlusSign(benchmark::State& state) {
  UniquePtr<EVP_PKEY> agent_key = *GenerateKey();
  UniquePtr<EVP_PKEY> ca_key = *GenerateKey();
  std::string message(400, 'm');
  auto sign = [&](EVP_PKEY* key) {
    UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
    size_t length = 0;
    EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
    EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<const uint8_t*>(message.data()),
                   message.size());
    std::string signature(length, '\0');
    EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(signature.data()), &length,
                   reinterpret_cast<const uint8_t*>(message.data()), message.size());
    signature.resize(length);
    return signature;
  };
  std::string csr_signature = sign(agent_key.get());
  for (auto _ : state) {
    UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
    EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, agent_key.get());
    if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const uint8_t*>(csr_signature.data()),
                         csr_signature.size(), reinterpret_cast<const uint8_t*>(message.data()),
                         message.size()) != 1) {
      state.SkipWithError("verify failed");
    }
    benchmark::DoNotOptimize(sign(ca_key.get()));
  }
  state.counters["ops/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CryptoBoundVerifyPlusSign);

}  // namespace
}  // namespace relay::pki
