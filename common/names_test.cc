#include "common/names.h"

#include "common/status_matchers.h"
#include "gtest/gtest.h"

namespace relay {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;

TEST(NamesTest, DnsLabels) {
  EXPECT_TRUE(IsDnsLabel("cluster-1"));
  EXPECT_TRUE(IsDnsLabel("a"));
  EXPECT_TRUE(IsDnsLabel(std::string(63, 'a')));
  EXPECT_FALSE(IsDnsLabel(""));
  EXPECT_FALSE(IsDnsLabel(std::string(64, 'a')));
  EXPECT_FALSE(IsDnsLabel("-a"));
  EXPECT_FALSE(IsDnsLabel("a-"));
  EXPECT_FALSE(IsDnsLabel("Cluster"));
  EXPECT_FALSE(IsDnsLabel("a.b"));
  EXPECT_FALSE(IsDnsLabel("a_b"));
  EXPECT_FALSE(IsDnsLabel("*"));
}

TEST(NamesTest, DnsNames) {
  EXPECT_TRUE(IsDnsName("gloo-mesh-mgmt-server.gloo-mesh"));
  EXPECT_FALSE(IsDnsName("a..b"));
  EXPECT_FALSE(IsDnsName(".a"));
  EXPECT_FALSE(IsDnsName("*.example.com"));
}

TEST(NamesTest, ValidateClusterNameSaysWhatToDo) {
  EXPECT_THAT(ValidateClusterName("east"), IsOk());
  absl::Status status = ValidateClusterName("East_1");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(status.message().find("East_1"), std::string::npos);
  EXPECT_NE(status.message().find("lowercase"), std::string::npos);
}

}  // namespace
}  // namespace relay
