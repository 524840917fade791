#include "common/grpc_tls.h"

#include <openssl/ssl.h>

#include "common/status_matchers.h"
#include "gtest/gtest.h"

namespace relay::grpc_tls {
namespace {

using ::relay::testing::IsOk;

// gRPC builds its SSL_CTX inside; what it gets is whatever OpenSSL applies to every
// new context, which is what this checks.
TEST(IssueNoSessionTicketsTest, NewServerContextsIssueNoTickets) {
  SSL_CTX* before = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(SSL_CTX_get_num_tickets(before), 2u);  // OpenSSL's default
  SSL_CTX_free(before);

  ASSERT_THAT(IssueNoSessionTickets(), IsOk());
  ASSERT_THAT(IssueNoSessionTickets(), IsOk());  // a second call changes nothing
  SSL_CTX* after = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(SSL_CTX_get_num_tickets(after), 0u);
  SSL_CTX_free(after);
}

}  // namespace
}  // namespace relay::grpc_tls
