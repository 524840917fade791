#ifndef RELAY_COMMON_HTTP_SERVER_H_
#define RELAY_COMMON_HTTP_SERVER_H_

// Plain-HTTP endpoints for probes and scraping (/metrics, /healthz, /readyz), served by
// GNU libmicrohttpd from one epoll thread. Idle and slow clients cost a descriptor, not
// a thread, and are dropped after a timeout: a thousand idle connections do not delay a
// probe (a thread-per-connection server stalls a probe behind 8 of them).

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct MHD_Daemon;

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
  struct Limits {
    // A connection with no complete request for this long is closed.
    absl::Duration idle_timeout = absl::Seconds(5);
    // Connections beyond this many are closed at once.
    unsigned max_connections = 4096;
  };

  // Listens on `address` ("host:port"; port 0 picks one). Returns the bound port.
  static absl::StatusOr<std::unique_ptr<HttpEndpoints>> Start(const std::string& address, Routes routes,
                                                              Limits limits);
  static absl::StatusOr<std::unique_ptr<HttpEndpoints>> Start(const std::string& address, Routes routes) {
    return Start(address, std::move(routes), Limits());
  }
  ~HttpEndpoints();

  int port() const { return port_; }

 private:
  HttpEndpoints() = default;
  Routes routes_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace relay

#endif  // RELAY_COMMON_HTTP_SERVER_H_
