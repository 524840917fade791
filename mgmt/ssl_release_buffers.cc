// Every TLS connection of the management server releases OpenSSL's record buffers
// while it is idle (SSL_MODE_RELEASE_BUFFERS).
//
// Why: OpenSSL keeps a ~17 KiB read buffer and a ~17 KiB write buffer per connection
// for the connection's whole life; with ten thousand agents that hold a relay stream
// and send a heartbeat every few seconds, that was a third of the server's memory per
// agent. gRPC 1.51 creates the SSL objects itself and offers no hook on them, so this
// file defines SSL_new in the server binary: the dynamic linker binds gRPC's call to
// this definition (an executable's symbols come first), which calls OpenSSL's own
// SSL_new and sets the mode. Linked into //mgmt:server only.
#include <dlfcn.h>
#include <openssl/ssl.h>

extern "C" SSL* SSL_new(SSL_CTX* context) {
  using SslNew = SSL* (*)(SSL_CTX*);
  static const SslNew openssl_ssl_new = reinterpret_cast<SslNew>(dlsym(RTLD_NEXT, "SSL_new"));
  if (openssl_ssl_new == nullptr) return nullptr;
  SSL* ssl = openssl_ssl_new(context);
  if (ssl != nullptr) SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  return ssl;
}
