// The load process of //tools/bench:agents decodes each PEM key and certificate once.
//
// Why: gRPC 1.51's TLS credentials build a new SSL_CTX from the PEM key, chain and
// roots every time a channel connects, and OpenSSL 3 decodes every PEM block through
// freshly built decoder contexts: 36% of the load process's CPU in a reconnect storm
// (perf, 3,000 agents). A real agent pays that ~1.5 ms once per connection on its own
// machine; a process that plays ten thousand agents on one core is bound by it, and
// then measures itself rather than the server. So this file defines the three PEM
// readers gRPC's TLS code calls, in the benchmark binary (the dynamic linker binds
// gRPC's calls to an executable's definitions first): each hands out a new reference
// to an object decoded once per distinct PEM block. What the server sees is unchanged:
// the same certificates, keys and full handshakes. Linked into //tools/bench:agents only.
#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace {

enum class Reader { kPrivateKey, kX509, kX509Aux };

struct Entry {
  EVP_PKEY* key = nullptr;
  X509* certificate = nullptr;
};

absl::Mutex cache_mu;
// Never freed: the benchmark keeps its agents' credentials for its whole life.
auto* const cache ABSL_GUARDED_BY(cache_mu) = new absl::flat_hash_map<std::string, Entry>();

template <typename Function>
Function Real(const char* name) {
  return reinterpret_cast<Function>(dlsym(RTLD_NEXT, name));
}

// The next PEM block of a memory BIO ("-----BEGIN" through the end of its "-----END"
// line), or empty when the BIO is not a memory BIO or holds no whole block. Encrypted
// blocks are left to OpenSSL (their decoding depends on the passphrase callback).
std::string_view NextBlock(BIO* bio, size_t* consumed) {
  if (BIO_method_type(bio) != BIO_TYPE_MEM) return {};
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) return {};
  std::string_view pending(data, static_cast<size_t>(size));
  size_t begin = pending.find("-----BEGIN ");
  if (begin == std::string_view::npos) return {};
  size_t end_marker = pending.find("-----END ", begin);
  if (end_marker == std::string_view::npos) return {};
  size_t line_end = pending.find('\n', end_marker);
  size_t end = line_end == std::string_view::npos ? pending.size() : line_end + 1;
  std::string_view block = pending.substr(begin, end - begin);
  if (block.find("ENCRYPTED") != std::string_view::npos) return {};
  *consumed = end;
  return block;
}

// Decodes the next block of `bio` with `decode` (OpenSSL's reader) once per distinct
// block and reader; consumes the block from `bio` as OpenSSL's reader would.
template <typename Object, typename Decode>
Object* Cached(Reader reader, BIO* bio, Decode decode, Object* Entry::*field) {
  size_t consumed = 0;
  std::string_view block = NextBlock(bio, &consumed);
  if (block.empty()) return decode(bio);
  std::string cache_key(1, static_cast<char>(reader));
  cache_key.append(block);
  std::string skipped(consumed, '\0');
  if (BIO_read(bio, skipped.data(), static_cast<int>(consumed)) != static_cast<int>(consumed)) return nullptr;
  absl::MutexLock lock(&cache_mu);
  Entry& entry = (*cache)[cache_key];
  if (entry.*field == nullptr) {
    BIO* one_block = BIO_new_mem_buf(block.data(), static_cast<int>(block.size()));
    if (one_block == nullptr) return nullptr;
    entry.*field = decode(one_block);
    BIO_free(one_block);
    if (entry.*field == nullptr) return nullptr;
  }
  return entry.*field;
}

template <typename Object>
using PemReader = Object* (*)(BIO*, Object**, pem_password_cb*, void*);

// What each reader below does, given OpenSSL's own reader of the same name.
template <typename Object>
Object* ReadOnce(PemReader<Object> openssl_read, Reader reader, Object* Entry::*field, int (*up_ref)(Object*),
                 BIO* bio, Object** out, pem_password_cb* callback, void* user) {
  if (openssl_read == nullptr) return nullptr;
  if (out != nullptr) return openssl_read(bio, out, callback, user);
  auto decode = [&](BIO* from) { return openssl_read(from, nullptr, callback, user); };
  Object* object = Cached(reader, bio, decode, field);
  if (object != nullptr) up_ref(object);
  return object;
}

}  // namespace

extern "C" {

EVP_PKEY* PEM_read_bio_PrivateKey(BIO* bio, EVP_PKEY** out, pem_password_cb* callback, void* user) {
  static const auto openssl_read = Real<PemReader<EVP_PKEY>>("PEM_read_bio_PrivateKey");
  return ReadOnce(openssl_read, Reader::kPrivateKey, &Entry::key, EVP_PKEY_up_ref, bio, out, callback, user);
}

X509* PEM_read_bio_X509(BIO* bio, X509** out, pem_password_cb* callback, void* user) {
  static const auto openssl_read = Real<PemReader<X509>>("PEM_read_bio_X509");
  return ReadOnce(openssl_read, Reader::kX509, &Entry::certificate, X509_up_ref, bio, out, callback, user);
}

X509* PEM_read_bio_X509_AUX(BIO* bio, X509** out, pem_password_cb* callback, void* user) {
  static const auto openssl_read = Real<PemReader<X509>>("PEM_read_bio_X509_AUX");
  return ReadOnce(openssl_read, Reader::kX509Aux, &Entry::certificate, X509_up_ref, bio, out, callback, user);
}

}  // extern "C"
