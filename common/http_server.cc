#include "common/http_server.h"

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "microhttpd.h"

namespace relay {
namespace {

MHD_Result Respond(MHD_Connection* connection, unsigned status, const std::string& body,
                   const char* content_type) {
  MHD_Response* response =
      MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result RespondToCheck(MHD_Connection* connection, const HttpEndpoints::Check& check) {
  std::string problem = check();
  return Respond(connection, problem.empty() ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                 problem.empty() ? "ok\n" : problem + "\n", "text/plain");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoints>> HttpEndpoints::Start(const std::string& address, Routes routes,
                                                                    Limits limits) {
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not host:port (e.g. 0.0.0.0:9091)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  std::string service = absl::StrCat(port);
  if (int error = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &resolved);
      error != 0 || resolved == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot use address \"", address, "\": ", gai_strerror(error)));
  }
  sockaddr_storage bind_address{};
  std::memcpy(&bind_address, resolved->ai_addr, resolved->ai_addrlen);
  bool ipv6 = resolved->ai_family == AF_INET6;
  freeaddrinfo(resolved);

  std::unique_ptr<HttpEndpoints> endpoints(new HttpEndpoints);
  endpoints->routes_ = std::move(routes);
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | (ipv6 ? MHD_USE_IPv6 : 0);
  auto handler = +[](void* self, MHD_Connection* connection, const char* url, const char* method,
                     const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                     void** /*request_state*/) -> MHD_Result {
    const Routes& routes = static_cast<HttpEndpoints*>(self)->routes_;
    if (*upload_data_size != 0) {  // a body: nothing here takes one
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 && std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
      return Respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    }
    if (routes.metrics && std::strcmp(url, "/metrics") == 0) {
      return Respond(connection, MHD_HTTP_OK, routes.metrics(), "text/plain; version=0.0.4");
    }
    if (routes.healthz && std::strcmp(url, "/healthz") == 0) return RespondToCheck(connection, routes.healthz);
    if (routes.readyz && std::strcmp(url, "/readyz") == 0) return RespondToCheck(connection, routes.readyz);
    return Respond(connection, MHD_HTTP_NOT_FOUND, "not found\n", "text/plain");
  };
  endpoints->daemon_ = MHD_start_daemon(
      flags, static_cast<uint16_t>(port), nullptr, nullptr, handler, endpoints.get(),
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&bind_address),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(limits.idle_timeout))),
      MHD_OPTION_CONNECTION_LIMIT, limits.max_connections,
      MHD_OPTION_END);
  if (endpoints->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                               ": is the port in use? pick another with the flag"));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(endpoints->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  endpoints->port_ = info != nullptr ? info->port : port;
  return endpoints;
}

HttpEndpoints::~HttpEndpoints() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace relay
