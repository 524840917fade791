#!/usr/bin/env bash
# The shipped alert rules (deploy/prometheus/relay-alerts.yaml): valid for Prometheus
# (promtool check rules), firing as their unit tests expect (promtool test rules), and
# naming only metrics a running management server exports. promtool comes with Debian's
# prometheus package, which tools/bazel installs; without it this says
# RELAY_TEST_SKIPPED, which fails under CI=true.
set -uo pipefail
runfiles=$(pwd)
work=$(mktemp -d /tmp/relay-alerts.XXXXXX)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

if ! command -v promtool >/dev/null; then
  [[ "${CI:-}" == "true" ]] && fail "promtool is not installed (CI=true: tools/bazel installs Debian's prometheus)"
  echo "RELAY_TEST_SKIPPED: promtool is not installed (apt-get install prometheus)"
  exit 0
fi
rules="$runfiles/deploy/prometheus/relay-alerts.yaml"
cp "$rules" "$runfiles/deploy/prometheus/relay-alerts_test.yaml" "$work/"
promtool check rules "$work/relay-alerts.yaml" || fail "promtool check rules refused the rules"
(cd "$work" && promtool test rules relay-alerts_test.yaml) || fail "the rules' unit tests failed"

# Every metric the rules name is one the server exports.
mgmt/server --secrets_dir="$work/mgmt" --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --health_address= --ready_file="$work/ready" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
[[ -s "$work/ready" ]] || fail "the server did not start: $(cat "$work/server.log")"
metrics_port=$(sed -n 's/^metrics_port=//p' "$work/ready")
exported=$(curl -s "127.0.0.1:$metrics_port/metrics")
for metric in $(grep -oE 'relay_[a-z_]+' "$rules" | sort -u); do
  grep -qE "^(# TYPE )?$metric[ {]" <<< "$exported" || fail "the rules name $metric, which the server does not export"
  echo "exported: $metric"
done
echo "PASS: rules valid, their unit tests pass, every metric they name is exported"
