#include "common/http_server.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace relay {
namespace {

void Serve(const HttpEndpoints::Check& check, httplib::Response& response) {
  std::string problem = check();
  response.status = problem.empty() ? 200 : 503;
  response.set_content(problem.empty() ? "ok\n" : problem + "\n", "text/plain");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoints>> HttpEndpoints::Start(const std::string& address,
                                                                    Routes routes) {
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not host:port (e.g. 0.0.0.0:9091)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::unique_ptr<HttpEndpoints> endpoints(new HttpEndpoints);
  endpoints->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *endpoints->server_;
  if (routes.metrics) {
    server.Get("/metrics", [metrics = routes.metrics](const httplib::Request&, httplib::Response& r) {
      r.set_content(metrics(), "text/plain; version=0.0.4");
    });
  }
  if (routes.healthz) {
    server.Get("/healthz", [check = routes.healthz](const httplib::Request&, httplib::Response& r) {
      Serve(check, r);
    });
  }
  if (routes.readyz) {
    server.Get("/readyz", [check = routes.readyz](const httplib::Request&, httplib::Response& r) {
      Serve(check, r);
    });
  }
  if (port == 0) {
    endpoints->port_ = server.bind_to_any_port(host.c_str());
  } else {
    endpoints->port_ = server.bind_to_port(host.c_str(), port) ? port : -1;
  }
  if (endpoints->port_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                               ": is the port in use? pick another with the flag"));
  }
  endpoints->thread_ = std::thread([&server] { server.listen_after_bind(); });
  return endpoints;
}

HttpEndpoints::~HttpEndpoints() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace relay
