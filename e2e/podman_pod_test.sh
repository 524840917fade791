#!/usr/bin/env bash
# Plays the agent pod (agent + rotator sidecar, deploy/podman/agent-pod.yaml.in) with
# `podman kube play` on the host network against a management server on 127.0.0.1 with
# 10-second client certificates, and checks: the agent registers, the rotator renews at
# least twice, and the agent's stream never leaves a heartbeat unanswered. Removes every
# pod, container and image it made. Where podman cannot run containers at all it says
# so in one line (RELAY_TEST_SKIPPED: ...), which .ci/run counts as skipped; under
# CI=true that is a failure instead (tools/bazel installs all it needs). The target is
# tagged external, so Bazel never caches a skip as a pass.
set -uo pipefail

runfiles=$(pwd)
export CONTAINERS_CONF="$runfiles/deploy/podman/containers.conf"
export HOME=${HOME:-/root}
work=$(mktemp -d /tmp/relay-podman.XXXXXX)
tag="e2e-$$-$RANDOM"
repository="localhost/relay-e2e"
pod="relay-e2e-agent-$$"
server_pid=""
# podman builds its own pod "pause" image on first use; remove it too if we caused that.
pause_existed=$(podman images -q localhost/podman-pause 2>/dev/null)

cleanup() {
  podman pod rm -f "$pod" >/dev/null 2>&1
  podman rmi -f "$repository/mgmt-server:$tag" "$repository/agent:$tag" "$repository/rotator:$tag" >/dev/null 2>&1
  # ...unless another pod (another run of this test, say) still uses it.
  if [[ -z "$pause_existed" && -z "$(podman pod ls -q 2>/dev/null)" ]]; then
    podman rmi $(podman images -q localhost/podman-pause 2>/dev/null) >/dev/null 2>&1
  fi
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

skip() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: podman cannot run containers here: $* (CI=true: this test may not skip; tools/bazel installs podman, runc and catatonit)"
    exit 1
  fi
  echo "RELAY_TEST_SKIPPED: podman cannot run containers here: $*"
  exit 0
}
fail() {
  echo "FAIL: $*"
  echo "--- server log";  tail -n 40 "$work/server.log" 2>/dev/null
  echo "--- agent log";   podman logs "$pod-agent" 2>&1 | tail -n 40
  echo "--- rotator log"; podman logs "$pod-rotator" 2>&1 | tail -n 40
  exit 1
}

command -v podman >/dev/null || skip "podman is not installed"
probe=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1) || skip "podman info failed: $(echo "$probe" | tail -n 1)"

# Images from the binaries under test.
bin="$work/bin"
mkdir -p "$bin"
cp mgmt/server agent/agent rotator/rotator tools/relayctl "$bin/"
build=$(deploy/build-images.sh --bin-dir "$bin" --tag "$tag" --repository "$repository" 2>&1) ||
  skip "building images failed: $(echo "$build" | tail -n 1)"
echo "images: $(echo $build)"
# A container must start at all (the runtime may be unusable in this environment).
smoke=$(podman run --rm --network host "$repository/agent:$tag" --help 2>&1)
[[ "$smoke" == *"relay agent"* ]] || skip "a container does not start: $(echo "$smoke" | tail -n 1)"

# The management server on the host.
mgmt/server --secrets_dir="$work/mgmt" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --health_address=127.0.0.1:0 --ready_file="$work/server.ready" --heartbeat_interval=500ms \
  --client_cert_ttl=10s > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [[ -s "$work/server.ready" ]] && break; sleep 0.1; done
[[ -s "$work/server.ready" ]] || fail "server did not start"
grpc_port=$(sed -n 's/^grpc_port=//p' "$work/server.ready")
metrics_port=$(sed -n 's/^metrics_port=//p' "$work/server.ready")
server_metrics() { curl -s "127.0.0.1:$metrics_port/metrics"; }

cluster=pod-cluster
tools/relayctl register --cluster=$cluster --mgmt_secrets_dir="$work/mgmt" --secrets_dir="$work/store" >/dev/null ||
  fail "relayctl register failed"
mkdir -p "$work/output"
# The containers run as the image's non-root user.
chown -R 65532:65532 "$work/store" "$work/output"

# A port nothing listens on (ss is in iproute2, on every Debian machine).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}
agent_metrics_port=$(free_port); rotator_metrics_port=$(free_port); rotator_health_port=$(free_port)
sed -e "s|@POD@|$pod|" -e "s|@CLUSTER@|$cluster|g" \
    -e "s|@AGENT_IMAGE@|$repository/agent:$tag|" -e "s|@ROTATOR_IMAGE@|$repository/rotator:$tag|" \
    -e "s|@SERVER_ADDRESS@|127.0.0.1:$grpc_port|g" -e "s|@STORE@|$work/store|" -e "s|@OUTPUT@|$work/output|" \
    -e "s|@AGENT_METRICS_PORT@|$agent_metrics_port|" -e "s|@ROTATOR_METRICS_PORT@|$rotator_metrics_port|" \
    -e "s|@ROTATOR_HEALTH_PORT@|$rotator_health_port|" deploy/podman/agent-pod.yaml.in > "$work/pod.yaml"
played=$(podman kube play "$work/pod.yaml" 2>&1) || skip "podman kube play failed: $(echo "$played" | tail -n 1)"

wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do (( SECONDS < deadline )) || return 1; sleep 0.2; done
}
connected() { server_metrics | grep -q "relay_push_clients_connected{cluster=\"$cluster\"} 1"; }
renewals() { server_metrics | sed -n 's/^relay_certificates_issued_total{kind="renew"} //p'; }
renewed_twice() { local n; n=$(renewals); [[ -n "$n" && "$n" -ge 2 ]]; }

wait_for 60 connected || fail "the agent in the pod did not connect"
echo "agent registered and connected"
wait_for 40 renewed_twice || fail "the rotator did not renew twice (renewals: $(renewals))"
echo "rotator renewed $(renewals) times"
sleep 1
agent_metrics=$(curl -s "127.0.0.1:$agent_metrics_port/metrics")
unanswered=$(echo "$agent_metrics" | sed -n 's/^relay_agent_heartbeats_unanswered_total //p')
acks=$(echo "$agent_metrics" | sed -n 's/^relay_agent_heartbeat_acks_total //p')
[[ "$unanswered" == "0" ]] || fail "heartbeats went unanswered: $unanswered"
[[ -n "$acks" && "$acks" -gt 10 ]] || fail "too few heartbeats answered: $acks"
connected || fail "the agent is not connected at the end"
health=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$rotator_health_port/healthz")
[[ "$health" == "200" ]] || fail "rotator /healthz answered $health"
# The containers ran as the non-root user with a read-only root filesystem.
user=$(podman inspect "$pod-agent" --format '{{.Config.User}}')
readonly_root=$(podman inspect "$pod-agent" --format '{{.HostConfig.ReadonlyRootfs}}')
[[ "$readonly_root" == "true" ]] || fail "agent root filesystem is not read-only"
[[ "$user" == 65532* ]] || fail "agent runs as '$user', not 65532"
echo "PASS: $acks heartbeats answered, none missed; rotator healthy; user $user, read-only root"
