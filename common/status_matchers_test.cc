#include "common/status_matchers.h"

#include "gtest/gtest.h"

namespace relay::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusMatchersTest, MatchStatusAndStatusOr) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::NotFoundError("no east"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(absl::NotFoundError("no east")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(absl::NotFoundError("no east"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("east")));
  EXPECT_THAT(absl::NotFoundError("no east"), Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("west"))));
  EXPECT_THAT(absl::NotFoundError("no east"), Not(StatusIs(absl::StatusCode::kAborted)));
}

// What a failure says: the status itself, message and all.
TEST(StatusMatchersTest, AFailureExplainsItselfWithTheStatus) {
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(IsOk(), absl::PermissionDeniedError("csr names west"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("PERMISSION_DENIED: csr names west"));
  ::testing::StringMatchResultListener code_listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(StatusIs(absl::StatusCode::kOk), absl::StatusOr<int>(absl::AbortedError("stale")),
                                             &code_listener));
  EXPECT_THAT(code_listener.str(), HasSubstr("ABORTED: stale"));
}

// Shaped like grpc::Status (error_code(), error_message()): matched without gRPC here.
struct RpcStatus {
  int error_code() const { return code; }
  std::string error_message() const { return message; }
  int code;
  std::string message;
};

TEST(StatusMatchersTest, MatchRpcStatuses) {
  EXPECT_THAT((RpcStatus{0, ""}), IsOk());
  EXPECT_THAT((RpcStatus{7, "csr names west"}), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("west")));
}

}  // namespace
}  // namespace relay::testing
