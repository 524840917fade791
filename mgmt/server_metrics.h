#ifndef RELAY_MGMT_SERVER_METRICS_H_
#define RELAY_MGMT_SERVER_METRICS_H_

// The management server's metrics, declared once (common/metrics.h).

#include <string>

#include "common/metrics.h"

namespace relay::mgmt {

struct ServerMetrics {
  explicit ServerMetrics(Metrics& registry);

  // The two gauges operators already scrape, 1 while the cluster holds a relay stream.
  void SetConnected(const std::string& cluster, bool connected);
  // A deregistered cluster: its connection series go.
  void ForgetCluster(const std::string& cluster);

  Gauge& push_clients_connected;     // {cluster}
  Gauge& pull_clients_connected;     // {cluster}
  Counter& certificates_issued;      // {kind}
  Counter& certificates_refused;     // {reason}
  Gauge& certificate_expiry;         // {certificate}: root, intermediate, server
  Gauge& client_certificate_expiry;  // {cluster}
  Gauge& snapshot_version;           // {cluster}
  Gauge& snapshot_acked_version;     // {cluster}
  Counter& connections_shed;
  Counter& handshakes_shed;
  Gauge& agent_clock_skew;  // {cluster}
  Gauge& pending_handshakes;
  Counter& reregistrations;
  Counter& agent_version_skew;  // {how}
  Counter& agent_log_lines_dropped;  // {cluster}
  Counter& trust_bundle_acks_ignored;
  Gauge& housekeeping_leader;   // 1 on the replica that runs once-only work
};

}  // namespace relay::mgmt

#endif  // RELAY_MGMT_SERVER_METRICS_H_
