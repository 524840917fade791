#ifndef RELAY_COMMON_STATUS_MATCHERS_H_
#define RELAY_COMMON_STATUS_MATCHERS_H_

// gMock matchers for absl::Status, absl::StatusOr<T> and grpc::Status that print the status when
// they fail, so a failed check says what went wrong, not only that it did:
//
//   EXPECT_THAT(store->Put(...), IsOk());
//   EXPECT_THAT(registry->Find("east"), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(Renew(...), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("east")));

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace relay::testing {

inline absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}
// grpc::Status, without depending on gRPC: its codes are Abseil's, number for number.
template <typename GrpcStatus>
auto StatusOf(const GrpcStatus& status) -> decltype(status.error_code(), status.error_message(), absl::Status()) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  absl::Status status = relay::testing::StatusOf(arg);
  if (!status.ok()) *result_listener << "whose status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code,
          std::string(negation ? "does not have" : "has") + " status code " + absl::StatusCodeToString(code)) {
  absl::Status status = relay::testing::StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string(negation ? "does not have" : "has") + " status code " + absl::StatusCodeToString(code) +
               " and a message that " + ::testing::DescribeMatcher<std::string>(message_matcher, negation)) {
  absl::Status status = relay::testing::StatusOf(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code &&
         ::testing::Matcher<std::string>(message_matcher).Matches(std::string(status.message()));
}

}  // namespace relay::testing

#endif  // RELAY_COMMON_STATUS_MATCHERS_H_
