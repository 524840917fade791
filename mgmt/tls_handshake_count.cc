// Counts the management server's TLS handshakes in progress, for accept_guard's bound
// on them (--max_pending_handshakes).
//
// Why here: gRPC 1.51 (Debian's) has no limit on connections in their handshake and no
// hook on its handshaker, only a per-connection timeout. Like ssl_release_buffers.cc,
// this file defines OpenSSL functions gRPC calls in the server binary; the dynamic
// linker binds gRPC's calls to them and they call OpenSSL's own:
//  - SSL_set_accept_state: gRPC calls it as it starts a server-side handshake on an
//    accepted connection (before the peer has sent a byte): one more in progress;
//  - SSL_do_handshake: returning 1, the handshake is done: one fewer;
//  - SSL_free: a connection that goes before its handshake finished: one fewer.
// gRPC calls SSL_set_info_callback on every connection itself, so an info callback of
// ours would be replaced. Each SSL's state is kept in its ex_data. Linked into
// //mgmt:server only.
#include <dlfcn.h>
#include <openssl/ssl.h>

#include <cstdint>

#include "mgmt/accept_guard.h"

namespace {

enum HandshakeState : intptr_t { kUncounted = 0, kInProgress = 1, kEnded = 2 };

int StateIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

HandshakeState StateOf(const SSL* ssl) {
  return static_cast<HandshakeState>(reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, StateIndex())));
}

void SetState(SSL* ssl, HandshakeState state) {
  SSL_set_ex_data(ssl, StateIndex(), reinterpret_cast<void*>(static_cast<intptr_t>(state)));
}

template <typename Function>
Function Real(const char* name) {
  return reinterpret_cast<Function>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" void SSL_set_accept_state(SSL* ssl) {
  static const auto real = Real<void (*)(SSL*)>("SSL_set_accept_state");
  if (real == nullptr) return;
  real(ssl);
  if (StateIndex() >= 0 && StateOf(ssl) == kUncounted) {
    SetState(ssl, kInProgress);
    relay::mgmt::accept_guard::HandshakeStarted();
  }
}

extern "C" int SSL_do_handshake(SSL* ssl) {
  static const auto real = Real<int (*)(SSL*)>("SSL_do_handshake");
  if (real == nullptr) return -1;
  const int result = real(ssl);
  if (result == 1 && StateIndex() >= 0 && StateOf(ssl) == kInProgress) {
    SetState(ssl, kEnded);
    relay::mgmt::accept_guard::HandshakeEnded();
  }
  return result;
}

extern "C" void SSL_free(SSL* ssl) {
  static const auto real = Real<void (*)(SSL*)>("SSL_free");
  if (ssl != nullptr && StateIndex() >= 0 && StateOf(ssl) == kInProgress) {
    SetState(ssl, kEnded);
    relay::mgmt::accept_guard::HandshakeEnded();
  }
  if (real != nullptr) real(ssl);
}
