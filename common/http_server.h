#ifndef RELAY_COMMON_HTTP_SERVER_H_
#define RELAY_COMMON_HTTP_SERVER_H_

// Plain-HTTP endpoints for probes and scraping (/metrics, /healthz, /readyz), served by
// cpp-httplib on a thread of its own.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace relay {

class HttpEndpoints {
 public:
  // A handler returns an empty string for 200, or the reason for 503.
  using Check = std::function<std::string()>;
  struct Routes {
    std::function<std::string()> metrics;  // Prometheus text; null: no /metrics
    Check healthz;                          // null: no /healthz
    Check readyz;                           // null: no /readyz
  };

  // Listens on `address` ("host:port"; port 0 picks one). Returns the bound port.
  static absl::StatusOr<std::unique_ptr<HttpEndpoints>> Start(const std::string& address,
                                                              Routes routes);
  ~HttpEndpoints();

  int port() const { return port_; }

 private:
  HttpEndpoints() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace relay

#endif  // RELAY_COMMON_HTTP_SERVER_H_
