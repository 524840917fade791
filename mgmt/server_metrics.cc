#include "mgmt/server_metrics.h"

namespace relay::mgmt {

ServerMetrics::ServerMetrics(Metrics& registry)
    : push_clients_connected(registry.AddGauge(
          "relay_push_clients_connected", "1 while the cluster's agent holds a relay stream (agent to server).",
          {"cluster"})),
      pull_clients_connected(registry.AddGauge(
          "relay_pull_clients_connected", "1 while the cluster's agent holds a relay stream (server to agent).",
          {"cluster"})),
      certificates_issued(registry.AddCounter("relay_certificates_issued_total",
                                              "Client certificates issued, by kind (register, renew).", {"kind"})),
      certificates_refused(registry.AddCounter("relay_certificates_refused_total",
                                               "Certificate requests refused, by reason.", {"reason"})),
      certificate_expiry(registry.AddGauge("relay_certificate_expiry_timestamp_seconds",
                                           "notAfter of the root, intermediate and server certificates.",
                                           {"certificate"})),
      client_certificate_expiry(registry.AddGauge(
          "relay_client_certificate_expiry_timestamp_seconds",
          "notAfter of the client certificate each cluster's agent connects with.", {"cluster"})),
      snapshot_version(registry.AddGauge("relay_snapshot_version", "Latest snapshot version pushed, by cluster.",
                                         {"cluster"})),
      snapshot_acked_version(registry.AddGauge("relay_snapshot_acked_version",
                                               "Latest snapshot version the agent acknowledged, by cluster.",
                                               {"cluster"})),
      connections_shed(registry.AddCounter(
          "relay_connections_shed_total",
          "Relay connections closed unserved because too few file descriptors were free.")),
      handshakes_shed(registry.AddCounter(
          "relay_handshakes_shed_total",
          "Relay connections closed unserved because --max_pending_handshakes connections were still in their "
          "TLS handshake.")),
      agent_clock_skew(registry.AddGauge(
          "relay_agent_clock_skew_seconds",
          "A connected agent's clock minus the server's, from its latest heartbeat (positive: ahead; the one-way "
          "network delay is included). Certificates are dated 5 minutes back, so beyond that new ones look not "
          "yet valid to an agent that is behind.",
          {"cluster"})),
      pending_handshakes(registry.AddGauge("relay_pending_handshakes",
                                           "Relay connections in their TLS handshake (sampled every 250 ms).")),
      reregistrations(registry.AddCounter(
          "relay_reregistrations_total",
          "Registers with the shared token that replaced a cluster's still valid certificate (its agent was "
          "offline); the replaced certificates are revoked.")),
      agent_version_skew(registry.AddCounter(
          "relay_agent_version_skew_total",
          "Agent connections whose version differs from the server's, by how (major: refused; minor, patch; "
          "unknown: no readable version).",
          {"how"})),
      agent_log_lines_dropped(registry.AddCounter(
          "relay_agent_log_lines_dropped_total",
          "Log lines an agent's messages (status, acks) would have caused beyond the limit per stream "
          "(5 a second, bursts of 20), dropped so one agent cannot flood the server's log.",
          {"cluster"})),
      trust_bundle_acks_ignored(registry.AddCounter(
          "relay_trust_bundle_acks_ignored_total",
          "Trust bundle acks naming a bundle other than the one this server serves; not recorded (an agent "
          "that keeps sending them is misbehaving, or acks a bundle the server has since replaced).")),
      housekeeping_leader(registry.AddGauge(
          "relay_housekeeping_leader",
          "1 on the replica elected to run once-only work (server certificate renewal, clearing dead "
          "replicas' records); a single server always is.")) {
  connections_shed.Touch();
  handshakes_shed.Touch();
  reregistrations.Touch();
  trust_bundle_acks_ignored.Touch();
}

void ServerMetrics::SetConnected(const std::string& cluster, bool connected) {
  push_clients_connected.Set({cluster}, connected ? 1 : 0);
  pull_clients_connected.Set({cluster}, connected ? 1 : 0);
}

void ServerMetrics::ForgetCluster(const std::string& cluster) {
  push_clients_connected.Remove({cluster});
  pull_clients_connected.Remove({cluster});
}

}  // namespace relay::mgmt
