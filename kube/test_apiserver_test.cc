// The stand-in apiserver holds to the documented semantics it claims (test_apiserver.h):
// a backend tested against a lenient fake would prove nothing.
#include "kube/test_apiserver.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status_matchers.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace relay::kube::testing {
namespace {

using json = nlohmann::json;
using ::relay::testing::IsOk;

class TestApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestApiServer::Options options;
    options.bookmark_interval = absl::Milliseconds(100);
    auto started = TestApiServer::Start(options);
    ASSERT_THAT(started, IsOk());
    server_ = *std::move(started);
    client_ = std::make_unique<httplib::Client>(server_->url());
    client_->set_bearer_token_auth(server_->token().c_str());
  }

  static std::string Secret(const std::string& name, const std::string& rv = "", const std::string& type = "Opaque") {
    json body = {{"kind", "Secret"}, {"apiVersion", "v1"}, {"metadata", {{"name", name}}}, {"type", type},
                 {"data", {{"token", "c2VjcmV0"}}}};
    if (!rv.empty()) body["metadata"]["resourceVersion"] = rv;
    return body.dump();
  }
  static std::string Path(const std::string& name = "") {
    return "/api/v1/namespaces/gloo-mesh/secrets" + (name.empty() ? "" : "/" + name);
  }

  std::unique_ptr<TestApiServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(TestApiServerTest, WithoutTheBearerTokenEveryRequestIs401) {
  httplib::Client anonymous(server_->url());
  auto got = anonymous.Get(Path("x").c_str());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 401);
  EXPECT_EQ(json::parse(got->body)["reason"], "Unauthorized");
  anonymous.set_bearer_token_auth("another-token");
  EXPECT_EQ(anonymous.Post(Path().c_str(), Secret("x"), "application/json")->status, 401);
}

TEST_F(TestApiServerTest, CreateUpdateAndDeleteFollowOptimisticConcurrency) {
  auto created = client_->Post(Path().c_str(), Secret("token"), "application/json");
  ASSERT_EQ(created->status, 201);
  std::string rv = json::parse(created->body)["metadata"]["resourceVersion"];
  EXPECT_EQ(client_->Post(Path().c_str(), Secret("token"), "application/json")->status, 409);

  auto updated = client_->Put(Path("token").c_str(), Secret("token", rv), "application/json");
  ASSERT_EQ(updated->status, 200);
  std::string next_rv = json::parse(updated->body)["metadata"]["resourceVersion"];
  EXPECT_NE(next_rv, rv);
  auto stale = client_->Put(Path("token").c_str(), Secret("token", rv), "application/json");
  EXPECT_EQ(stale->status, 409);
  EXPECT_EQ(json::parse(stale->body)["reason"], "Conflict");
  // No resourceVersion: an unconditional update, which Secrets allow.
  EXPECT_EQ(client_->Put(Path("token").c_str(), Secret("token"), "application/json")->status, 200);
  server_->InjectConflicts(1);
  EXPECT_EQ(client_->Put(Path("token").c_str(), Secret("token"), "application/json")->status, 409);
  EXPECT_EQ(client_->Put(Path("missing").c_str(), Secret("missing"), "application/json")->status, 404);
  json retyped = json::parse(Secret("token", "", "kubernetes.io/tls"));
  retyped["data"] = {{"tls.crt", "Yw=="}, {"tls.key", "aw=="}};
  auto immutable = client_->Put(Path("token").c_str(), retyped.dump(), "application/json");
  EXPECT_EQ(immutable->status, 422);
  EXPECT_NE(json::parse(immutable->body).value("message", "").find("immutable"), std::string::npos);

  EXPECT_EQ(client_->Delete(Path("token").c_str())->status, 200);
  EXPECT_EQ(client_->Delete(Path("token").c_str())->status, 404);
  EXPECT_EQ(client_->Get(Path("token").c_str())->status, 404);
}

TEST_F(TestApiServerTest, InvalidSecretsAre422AndNothingIsStored) {
  EXPECT_EQ(client_->Post(Path().c_str(), Secret("Not_A_Name"), "application/json")->status, 422);
  EXPECT_EQ(client_->Post(Path().c_str(), Secret("tls", "", "kubernetes.io/tls"), "application/json")->status, 422);
  json bad_base64 = json::parse(Secret("b64"));
  bad_base64["data"]["token"] = "not base64!";
  EXPECT_EQ(client_->Post(Path().c_str(), bad_base64.dump(), "application/json")->status, 422);
  auto list = client_->Get(Path().c_str());
  EXPECT_TRUE(json::parse(list->body)["items"].empty());
}

// Reads a watch's events until `enough` says so (or the stream ends).
std::vector<json> Watch(httplib::Client& client, const std::string& path, int* status,
                        const std::function<bool(const std::vector<json>&)>& enough) {
  std::vector<json> events;
  std::string pending;
  auto result = client.Get(
      path.c_str(),
      [&](const httplib::Response& response) {
        *status = response.status;
        return true;
      },
      [&](const char* data, size_t length) {
        pending.append(data, length);
        size_t newline;
        while ((newline = pending.find('\n')) != std::string::npos) {
          events.push_back(json::parse(pending.substr(0, newline)));
          pending.erase(0, newline + 1);
        }
        return !enough(events);
      });
  (void)result;
  return events;
}

TEST_F(TestApiServerTest, WatchSendsChangesAfterTheVersionAndBookmarks) {
  auto created = client_->Post(Path().c_str(), Secret("token"), "application/json");
  std::string rv = json::parse(created->body)["metadata"]["resourceVersion"];
  ASSERT_EQ(client_->Post(Path().c_str(), Secret("other"), "application/json")->status, 201);
  ASSERT_EQ(client_->Put(Path("token").c_str(), Secret("token"), "application/json")->status, 200);
  httplib::Client watcher(server_->url());
  watcher.set_bearer_token_auth(server_->token().c_str());
  int status = 0;
  std::vector<json> events = Watch(
      watcher,
      Path() + "?watch=true&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dtoken&resourceVersion=" + rv,
      &status, [](const std::vector<json>& seen) { return !seen.empty() && seen.back()["type"] == "BOOKMARK"; });
  EXPECT_EQ(status, 200);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["type"], "MODIFIED");  // "other" is filtered out; the ADDED was at rv
  EXPECT_EQ(events[0]["object"]["metadata"]["name"], "token");
  EXPECT_EQ(events[1]["type"], "BOOKMARK");
}

TEST_F(TestApiServerTest, ACompactedVersionIs410InBothForms) {
  auto created = client_->Post(Path().c_str(), Secret("token"), "application/json");
  std::string rv = json::parse(created->body)["metadata"]["resourceVersion"];
  ASSERT_EQ(client_->Put(Path("token").c_str(), Secret("token"), "application/json")->status, 200);
  server_->Compact();
  // As the HTTP status when the watch starts.
  auto gone = client_->Get((Path() + "?watch=true&resourceVersion=" + rv).c_str());
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 410);
  EXPECT_EQ(json::parse(gone->body)["reason"], "Expired");

  // As an ERROR event under a running watch.
  std::string now = json::parse(client_->Get(Path().c_str())->body)["metadata"]["resourceVersion"];
  std::thread compactor([&] {
    absl::SleepFor(absl::Milliseconds(300));
    server_->Compact();
  });
  httplib::Client watcher(server_->url());
  watcher.set_bearer_token_auth(server_->token().c_str());
  int status = 0;
  std::vector<json> events =
      Watch(watcher, Path() + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + now, &status,
            [](const std::vector<json>& seen) { return !seen.empty() && seen.back()["type"] == "ERROR"; });
  compactor.join();
  EXPECT_EQ(status, 200);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "ERROR");
  EXPECT_EQ(events.back()["object"]["code"], 410);
}

// A watch ends by itself after timeoutSeconds, complete and without an event; one that
// EndWatches() ends too. Either way the client watches again from where it was.
TEST_F(TestApiServerTest, AWatchEndsAfterItsTimeoutSeconds) {
  std::string now = json::parse(client_->Get(Path().c_str())->body)["metadata"]["resourceVersion"];
  httplib::Client watcher(server_->url());
  watcher.set_bearer_token_auth(server_->token().c_str());
  int status = 0;
  std::vector<json> events = Watch(watcher, Path() + "?watch=true&timeoutSeconds=1&resourceVersion=" + now, &status,
                                   [](const std::vector<json>&) { return false; });
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(server_->Count("WATCH END"), 1);

  // Ended once it is under way (its first bookmark has arrived).
  events = Watch(watcher, Path() + "?watch=true&allowWatchBookmarks=true&resourceVersion=" + now, &status,
                 [&](const std::vector<json>& seen) {
                   if (seen.size() == 1) server_->EndWatches();
                   return false;
                 });
  EXPECT_EQ(server_->Count("WATCH END"), 2);
  for (const json& event : events) EXPECT_EQ(event["type"], "BOOKMARK");

  EXPECT_EQ(client_->Get((Path() + "?watch=true&timeoutSeconds=soon").c_str())->status, 400);
}

}  // namespace
}  // namespace relay::kube::testing
