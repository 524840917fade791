#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "common/test_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "secrets/directory_store.h"
#include "state/state_store.h"
#include "tokens/bootstrap_tokens.h"
#include "tokens/identity_token.h"

namespace relay::tokens {
namespace {

using ::relay::testing::IsOk;
using ::relay::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kNs[] = "gloo-mesh";

std::unique_ptr<secrets::DirectorySecretStore> TempStore() {
  return *secrets::DirectorySecretStore::Create(relay::testing::MakeTestDir("tokens"));
}

const absl::Time kNow = absl::FromUnixSeconds(1767225600);

TEST(IdentityTokenTest, GeneratedTokensAreBase64UrlOf32RandomBytes) {
  std::string a = *GenerateToken();
  std::string b = *GenerateToken();
  EXPECT_EQ(a.size(), 43u);
  EXPECT_NE(a, b);
  for (char c : a) EXPECT_TRUE(isalnum(c) || c == '-' || c == '_') << c;
}

TEST(IdentityTokenTest, ComparisonIsExactAndEmptyNeverMatches) {
  EXPECT_TRUE(TokensEqual("abc", "abc"));
  EXPECT_FALSE(TokensEqual("abc", "abd"));
  EXPECT_FALSE(TokensEqual("abc", "abcd"));
  EXPECT_FALSE(TokensEqual("", ""));
  EXPECT_FALSE(TokensEqual("x", ""));
}

TEST(IdentityTokenTest, LoadTrimsAndReportsMissingOrEmptyKeysWithoutValues) {
  auto store = TempStore();
  ASSERT_THAT(store->Put(kNs, "relay-identity-token-secret", {{"token", "s3cret-token\n"}}), IsOk());
  EXPECT_EQ(*LoadToken(*store, kNs, "relay-identity-token-secret", "token"), "s3cret-token");

  auto wrong_key = LoadToken(*store, kNs, "relay-identity-token-secret", "other");
  EXPECT_THAT(wrong_key, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(wrong_key.status().message(), HasSubstr("no key \"other\""));
  EXPECT_THAT(wrong_key.status().message(), HasSubstr("it has: token"));
  EXPECT_THAT(wrong_key.status().message(), Not(HasSubstr("s3cret")));

  ASSERT_THAT(store->Put(kNs, "empty", {{"token", " \n"}}), IsOk());
  auto empty = LoadToken(*store, kNs, "empty", "token");
  EXPECT_THAT(empty, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(empty.status().message(), HasSubstr("is empty"));

  auto missing = LoadToken(*store, kNs, "nope", "token");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(missing.status().message(), HasSubstr("relayctl register"));
}

TEST(IdentityTokenTest, SharedTokensShorterThan32RandomBytesAreRefused) {
  EXPECT_THAT(CheckSharedTokenStrength(*GenerateToken(), kNs, "relay-identity-token-secret", "token"), IsOk());
  EXPECT_THAT(CheckSharedTokenStrength(std::string(43, 'a'), kNs, "relay-identity-token-secret", "token"), IsOk());
  for (std::string weak : {std::string("k9"), std::string("s3cret-token"), std::string(42, 'a')}) {
    absl::Status status = CheckSharedTokenStrength(weak, kNs, "relay-identity-token-secret", "token");
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition)) << weak;
    EXPECT_THAT(status.message(), HasSubstr("at least 43"));
    EXPECT_THAT(status.message(), HasSubstr("gloo-mesh/relay-identity-token-secret key \"token\""));
    EXPECT_THAT(status.message(), Not(HasSubstr(weak)));
  }
}

class BootstrapTokensTest : public ::testing::Test {
 protected:
  std::unique_ptr<state::StateStore> state_ = state::NewMemoryStateStore();
  BootstrapTokens tokens_{state_.get(), kNs};
};

TEST_F(BootstrapTokensTest, SingleUseTokenWorksOnceForItsCluster) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  EXPECT_TRUE(absl::StartsWith(token, kBootstrapTokenPrefix));
  int issued = 0;
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [&] { issued++; return absl::OkStatus(); }), IsOk());
  absl::Status again = tokens_.Redeem(token, "east", kNow, [&] { issued++; return absl::OkStatus(); });
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(issued, 1);
}

TEST_F(BootstrapTokensTest, OnlyTheHashIsStored) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  auto records = *state_->List(kBootstrapTokenKeyPrefix);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records.begin()->first, absl::StrCat(kBootstrapTokenKeyPrefix, TokenHash(token)));
  std::string random_part = token.substr(strlen(kBootstrapTokenPrefix));
  for (const auto& [k, v] : records) {
    EXPECT_THAT(k, Not(HasSubstr(random_part)));
    EXPECT_THAT(v.value, Not(HasSubstr(random_part)));
  }
}

// Earlier versions kept the hashes in one secret: they are moved, and still redeem.
TEST_F(BootstrapTokensTest, TokensKeptByEarlierVersionsStillWork) {
  std::string token = absl::StrCat(kBootstrapTokenPrefix, *GenerateToken());
  ASSERT_THAT(state_->secrets()
                  .Put(kNs, kBootstrapTokenSecret,
                       {{TokenHash(token), absl::StrCat("cluster=east;expires=", absl::ToUnixSeconds(kNow) + 3600,
                                                        ";uses=1")}})
                  , IsOk());
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), IsOk());
  EXPECT_TRUE(absl::IsNotFound(state_->secrets().Get(kNs, kBootstrapTokenSecret).status()));
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), StatusIs(absl::StatusCode::kUnauthenticated));
}

// Servers racing for one use: exactly one issues.
TEST_F(BootstrapTokensTest, AUseIsConsumedExactlyOnceByRacingRedeemers) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  std::atomic<int> issued{0};
  std::vector<std::thread> redeemers;
  for (int i = 0; i < 8; ++i) {
    redeemers.emplace_back([&] {
      (void)tokens_.Redeem(token, "east", kNow, [&] {
        issued++;
        return absl::OkStatus();
      });
    });
  }
  for (std::thread& redeemer : redeemers) redeemer.join();
  EXPECT_EQ(issued.load(), 1);
}

TEST_F(BootstrapTokensTest, OtherClusterIsDeniedAndDoesNotBurnTheToken) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  absl::Status other = tokens_.Redeem(token, "west", kNow, [] { return absl::OkStatus(); });
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(other.message(), HasSubstr("\"east\""));
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), IsOk());
}

TEST_F(BootstrapTokensTest, FailedIssuanceDoesNotBurnTheToken) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  absl::Status failed =
      tokens_.Redeem(token, "east", kNow, [] { return absl::InvalidArgumentError("bad CSR"); });
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), IsOk());
}

TEST_F(BootstrapTokensTest, ExpiredAndUnknownTokensAreRefusedAlike) {
  std::string token = *tokens_.Create("east", absl::Minutes(5), 1, kNow);
  absl::Status expired =
      tokens_.Redeem(token, "east", kNow + absl::Minutes(6), [] { return absl::OkStatus(); });
  absl::Status unknown = tokens_.Redeem(absl::StrCat(kBootstrapTokenPrefix, "nope"), "east", kNow,
                                        [] { return absl::OkStatus(); });
  absl::Status shared_shape = tokens_.Redeem("abc", "east", kNow, [] { return absl::OkStatus(); });
  EXPECT_THAT(expired, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(expired, unknown);
  EXPECT_EQ(unknown, shared_shape);
  EXPECT_TRUE(tokens_.List(kNow + absl::Minutes(6))->empty());
}

// A revoked token can no longer be redeemed; prefixes too short or matching none are
// refused saying so.
TEST_F(BootstrapTokensTest, ARevokedTokenCannotBeRedeemed) {
  auto ok = [] { return absl::OkStatus(); };
  std::string token = *tokens_.Create("east", absl::Hours(1), 1, kNow);
  std::string other = *tokens_.Create("west", absl::Hours(1), 1, kNow);
  const std::string hash = TokenHash(token);
  EXPECT_THAT(tokens_.Revoke(hash.substr(0, 4)), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tokens_.Revoke("00000000zz"), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::string> revoked = tokens_.Revoke(hash.substr(0, 12));
  ASSERT_THAT(revoked, IsOk());
  EXPECT_EQ(*revoked, "east");
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, ok), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(tokens_.List(kNow)->size(), 1u);
  EXPECT_THAT(tokens_.Redeem(other, "west", kNow, ok), IsOk());
}

TEST_F(BootstrapTokensTest, MultiUseTokensCountDown) {
  std::string token = *tokens_.Create("east", absl::Hours(1), 2, kNow);
  EXPECT_EQ((*tokens_.List(kNow))[0].uses_left, 2);
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), IsOk());
  EXPECT_EQ((*tokens_.List(kNow))[0].uses_left, 1);
  EXPECT_THAT(tokens_.Redeem(token, "east", kNow, [] { return absl::OkStatus(); }), IsOk());
  EXPECT_TRUE(tokens_.List(kNow)->empty());
}

TEST_F(BootstrapTokensTest, BadCreateArgumentsAreRefused) {
  EXPECT_THAT(tokens_.Create("Bad_Name", absl::Hours(1), 1, kNow), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tokens_.Create("east", absl::ZeroDuration(), 1, kNow), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tokens_.Create("east", absl::Hours(1), 0, kNow), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace relay::tokens
