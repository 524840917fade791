#include "common/grpc_tls.h"

#include <openssl/ssl.h>

#include <set>
#include <string>

#include "common/status_matchers.h"
#include "gtest/gtest.h"

namespace relay::grpc_tls {
namespace {

using ::relay::testing::IsOk;

// gRPC builds its SSL_CTX inside; what it gets is whatever OpenSSL applies to every
// new context, which is what this checks.
TEST(ApplyServerTlsPolicyTest, NewServerContextsIssueNoTicketsAndPreferTheServersCiphers) {
  SSL_CTX* before = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(SSL_CTX_get_num_tickets(before), 2u);  // OpenSSL's default
  EXPECT_EQ(SSL_CTX_get_options(before) & SSL_OP_NO_TICKET, 0u);
  EXPECT_EQ(SSL_CTX_get_options(before) & SSL_OP_CIPHER_SERVER_PREFERENCE, 0u);
  SSL_CTX_free(before);

  ASSERT_THAT(ApplyServerTlsPolicy(), IsOk());
  ASSERT_THAT(ApplyServerTlsPolicy(), IsOk());  // a second call changes nothing
  SSL_CTX* after = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(SSL_CTX_get_num_tickets(after), 0u);
  EXPECT_NE(SSL_CTX_get_options(after) & SSL_OP_NO_TICKET, 0u) << "no TLS 1.2 (RFC 5077) tickets either";
  EXPECT_NE(SSL_CTX_get_options(after) & SSL_OP_CIPHER_SERVER_PREFERENCE, 0u);
  SSL_CTX_free(after);
}

TEST(ChannelTargetTest, OneIpAddressStaysAsItIs) {
  EXPECT_EQ(ChannelTarget("127.0.0.1:9900"), "127.0.0.1:9900");
  EXPECT_EQ(ChannelTarget("[::1]:9900"), "[::1]:9900");
}

// Replicas: every address in one target, in an order that varies, so agents spread.
TEST(ChannelTargetTest, SeveralAddressesAreShuffledIntoOneTarget) {
  std::set<std::string> seen;
  for (int i = 0; i < 64; ++i) {
    std::string target = ChannelTarget("127.0.0.1:1, 127.0.0.2:2,127.0.0.3:3");
    ASSERT_EQ(target.rfind("ipv4:", 0), 0u) << target;
    for (const char* address : {"127.0.0.1:1", "127.0.0.2:2", "127.0.0.3:3"}) {
      EXPECT_NE(target.find(address), std::string::npos) << target;
    }
    seen.insert(target);
  }
  EXPECT_GT(seen.size(), 1u) << "the order never varied";
}

TEST(ChannelTargetTest, NamesAreResolved) {
  EXPECT_EQ(ChannelTarget("localhost:9900"), "ipv4:127.0.0.1:9900");
  // Unresolvable: left to gRPC, which says so when the channel connects.
  EXPECT_EQ(ChannelTarget("no-such-host.invalid:9900"), "no-such-host.invalid:9900");
}

}  // namespace
}  // namespace relay::grpc_tls
