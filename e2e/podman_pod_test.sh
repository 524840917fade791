#!/usr/bin/env bash
# Plays the agent pod of deploy/kubernetes/agent.yaml (agent + rotator sidecar; made
# into a Pod by deploy/pod_from_deployment's fixed rules) with `podman kube play` on the
# host network, against a management server on 127.0.0.1 with 20-second client
# certificates. Both clusters' Kubernetes APIs are test apiservers over TLS that enforce
# the Roles the manifests ship; the pod reaches its API through a service-account
# directory and KUBERNETES_SERVICE_* as kubelet provides them. Checks: the agent
# registers, the rotator renews at least twice, the agent's stream never leaves a
# heartbeat unanswered, neither Role lacked a verb, and a replacement pod connects with
# the certificate kept in the API, without registering. Removes every pod, container
# and image it made. Where podman cannot run containers at all it says
# so in one line (RELAY_TEST_SKIPPED: ...), which .ci/run counts as skipped; under
# CI=true that is a failure instead (tools/bazel installs all it needs). The target is
# tagged external, so Bazel never caches a skip as a pass. Its arguments go to
# pod_from_deployment (under --config=asan: --memory_limit_scale, see e2e/BUILD.bazel).
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
  for pid in "${management_pid:-}" "${workload_pid:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
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
  # A container the kernel killed (its memory limit) leaves no line in its log.
  echo "--- containers"
  podman ps -a --filter "pod=$pod" --format '{{.Names}} {{.Status}}' 2>&1
  for container in "$pod-agent" "$pod-rotator"; do
    podman inspect "$container" --format "$container: exit {{.State.ExitCode}}, OOM-killed {{.State.OOMKilled}}" 2>&1
  done
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

# A test apiserver (kube/test_apiserver.h) per cluster, over TLS, enforcing the Role the
# manifests ship for that cluster's component: a verb the Role lacks fails the test.
# start_apiserver NAME MANIFEST ROLE [--preload=FILE]: sets NAME_port, writes $work/NAME/.
start_apiserver() {
  local name=$1 manifest=$2 role=$3
  shift 3
  mkdir -p "$work/$name"
  head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$work/$name/token"
  kube/test_apiserver_main --token_file="$work/$name/token" --ca_file="$work/$name/ca.crt" \
    --rbac="$manifest" --role="$role" --ready_file="$work/$name/ready" "$@" > "$work/$name/apiserver.log" 2>&1 &
  eval "${name}_pid=$!"
  for _ in $(seq 100); do [[ -s "$work/$name/ready" ]] && break; sleep 0.1; done
  [[ -s "$work/$name/ready" ]] || fail "the $name apiserver did not start: $(cat "$work/$name/apiserver.log")"
  eval "${name}_port=$(sed -n 's/^port=//p' "$work/$name/ready")"
}
# Stops an apiserver; it then says in its log how many requests it refused 403.
stop_apiserver() {
  local pid_var="${1}_pid"
  kill "${!pid_var}" 2>/dev/null && wait "${!pid_var}" 2>/dev/null
  eval "${1}_pid="
}

# The management cluster's API, and the server on the host keeping its secrets there.
start_apiserver management deploy/kubernetes/mgmt-server.yaml relay-mgmt-server
cat > "$work/management/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: management
contexts: [{name: management, context: {cluster: management, user: relay}}]
clusters: [{name: management, cluster: {server: 'https://127.0.0.1:$management_port', certificate-authority: ca.crt}}]
users: [{name: relay, user: {tokenFile: token}}]
EOF
mgmt/server --secrets=kubernetes --kubeconfig="$work/management/kubeconfig" --namespace=gloo-mesh \
  --secrets_dir="$work/mgmt" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --health_address=127.0.0.1:0 --ready_file="$work/server.ready" --heartbeat_interval=500ms \
  --client_cert_ttl=20s > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [[ -s "$work/server.ready" ]] && break; sleep 0.1; done
[[ -s "$work/server.ready" ]] || fail "server did not start"
grpc_port=$(sed -n 's/^grpc_port=//p' "$work/server.ready")
metrics_port=$(sed -n 's/^metrics_port=//p' "$work/server.ready")
server_metrics() { curl -s "127.0.0.1:$metrics_port/metrics"; }

# The workload cluster's API, holding what relayctl secrets export gives it.
cluster=pod-cluster
tools/relayctl secrets export --cluster=$cluster --secrets=kubernetes --kubeconfig="$work/management/kubeconfig" \
  --admin_socket="$work/mgmt/admin.sock" > "$work/export.yaml" || fail "relayctl secrets export failed"
# The root as an older copy would hold it (one byte more): the server sends its trust
# bundle on the stream and the agent must replace relay-root-tls-secret, which its Role
# must allow.
ca_b64=$(sed -n 's/^  ca\.crt: //p' "$work/export.yaml")
[[ -n "$ca_b64" ]] || fail "no ca.crt in the exported manifest"
sed -i "s|^  ca\.crt: .*|  ca.crt: $( (printf '%s' "$ca_b64" | base64 -d; echo) | base64 -w0)|" "$work/export.yaml"
# In a namespace of its own: the pod finds it in its service account's namespace file,
# and the exported manifest goes where it is applied (kubectl apply -n).
start_apiserver workload deploy/kubernetes/agent.yaml relay-agent --preload="$work/export.yaml" \
  --preload_namespace=relay-system
# What kubelet mounts for the pod's service account.
mkdir -p "$work/serviceaccount" "$work/output"
cp "$work/workload/token" "$work/serviceaccount/token"
cp "$work/workload/ca.crt" "$work/serviceaccount/ca.crt"
echo relay-system > "$work/serviceaccount/namespace"
chmod 0644 "$work/serviceaccount/"*
# The containers run as the image's non-root user.
chown -R 65532:65532 "$work/output"

# A port nothing listens on (ss is in iproute2, on every Debian machine), below the
# ephemeral range, where an outgoing connection could take it before the pod binds it.
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
free_port() {
  local port
  while :; do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    [[ -n "$(ss -Htln "sport = :$port")" ]] || { echo "$port"; return; }
  done
}
agent_metrics_port=$(free_port); agent_health_port=$(free_port)
rotator_metrics_port=$(free_port); rotator_health_port=$(free_port)
# The pod is the shipped Deployment, by the rules of deploy/pod_from_deployment --help.
deploy/pod_from_deployment --manifest=deploy/kubernetes/agent.yaml --deployment=gloo-mesh-agent --pod_name="$pod" \
  --image=agent="$repository/agent:$tag" --image=rotator="$repository/rotator:$tag" \
  --arg=agent:--cluster=$cluster --arg=agent:--server_address=127.0.0.1:$grpc_port \
  --arg=agent:--metrics_address=127.0.0.1:$agent_metrics_port --arg=agent:--health_address=127.0.0.1:$agent_health_port \
  --arg=agent:--max_backoff=1s \
  --arg=rotator:--cluster=$cluster --arg=rotator:--server_address=127.0.0.1:$grpc_port \
  --arg=rotator:--metrics_address=127.0.0.1:$rotator_metrics_port \
  --arg=rotator:--health_address=127.0.0.1:$rotator_health_port --arg=rotator:--retry_max=1s \
  --host_dir=output="$work/output" \
  --service_account_dir="$work/serviceaccount" --apiserver=127.0.0.1:$workload_port \
  --configmaps_out="$work/configmaps.yaml" "$@" > "$work/pod.yaml" || fail "pod_from_deployment failed"
play_pod() {
  played=$(podman kube play --configmap="$work/configmaps.yaml" "$work/pod.yaml" 2>&1) ||
    skip "podman kube play failed: $(echo "$played" | tail -n 1)"
}
play_pod

wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do (( SECONDS < deadline )) || return 1; sleep 0.2; done
}
# Output is captured before it is searched: with pipefail, `producer | grep -q` fails
# whenever grep exits at its match before the producer has written its last line.
connected() { [[ "$(server_metrics)" == *"relay_push_clients_connected{cluster=\"$cluster\"} 1"* ]]; }
agent_logged() { [[ "$(podman logs "$pod-agent" 2>&1)" == *"$1"* ]]; }
renewals() { server_metrics | sed -n 's/^relay_certificates_issued_total{kind="renew"} //p'; }
renewed_twice() { local n; n=$(renewals); [[ -n "$n" && "$n" -ge 2 ]]; }

wait_for 60 connected || fail "the agent in the pod did not connect"
echo "agent registered and connected"
wait_for 30 agent_logged event=trust_bundle_stored ||
  fail "the agent did not store the server's trust bundle"
wait_for 60 renewed_twice || fail "the rotator did not renew twice (renewals: $(renewals))"
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

# A replacement pod (a reschedule) connects with the certificate the API kept: no
# registration (the certificate has at least half of its 20 s left when the pod goes).
registrations() { server_metrics | sed -n 's/^relay_certificates_issued_total{kind="register"} //p'; }
registered_before=$(registrations)
podman pod stop -t 2 "$pod" >/dev/null 2>&1
podman pod rm -f "$pod" >/dev/null 2>&1
disconnected() { ! connected; }
wait_for 30 disconnected || fail "the server still counts the removed pod as connected"
play_pod
wait_for 60 connected || fail "the replacement pod did not connect"
wait_for 30 agent_logged event=credentials_loaded ||
  fail "the replacement pod did not load the certificate from the API"
[[ "$(registrations)" == "$registered_before" ]] ||
  fail "the replacement pod registered again (registrations $registered_before -> $(registrations))"
echo "the replacement pod connected with the kept certificate"

# Neither Role lacked a verb: every request the server, the agent and the rotator made
# was one the shipped Roles allow.
kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=""
podman pod stop -t 2 "$pod" >/dev/null 2>&1
for api in management workload; do
  stop_apiserver $api
  refused=$(sed -n 's/^403 refusals: //p' "$work/$api/apiserver.log")
  [[ "$refused" == "0" ]] || fail "the $api apiserver refused $refused request(s) with 403: its Role in deploy/kubernetes lacks a verb"
done
echo "PASS: $acks heartbeats answered, none missed; rotator healthy; user $user, read-only root; no 403 from either Role"
