#include <dlfcn.h>
#include <openssl/ssl.h>

#include "gtest/gtest.h"

namespace {

// gRPC's libraries find SSL_new through the global symbol scope, as dlsym does here:
// the server's definition must be the one they get, and it must set the mode.
TEST(SslReleaseBuffersTest, SslObjectsFromTheGlobalScopeReleaseTheirBuffers) {
  using SslNew = SSL* (*)(SSL_CTX*);
  auto global_ssl_new = reinterpret_cast<SslNew>(dlsym(RTLD_DEFAULT, "SSL_new"));
  ASSERT_NE(global_ssl_new, nullptr);
  auto openssl_ssl_new = reinterpret_cast<SslNew>(dlsym(RTLD_NEXT, "SSL_new"));
  EXPECT_NE(global_ssl_new, openssl_ssl_new);

  SSL_CTX* context = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(context, nullptr);
  SSL* ssl = global_ssl_new(context);
  ASSERT_NE(ssl, nullptr);
  EXPECT_NE(SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS, 0u);
  SSL_free(ssl);

  // OpenSSL's own SSL_new leaves the mode off: the test can tell the two apart.
  ssl = openssl_ssl_new(context);
  ASSERT_NE(ssl, nullptr);
  EXPECT_EQ(SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS, 0u);
  SSL_free(ssl);
  SSL_CTX_free(context);
}

}  // namespace
