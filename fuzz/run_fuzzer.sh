#!/usr/bin/env bash
# One fuzz target as a Bazel test (fuzz/BUILD.bazel):
#   replay mode (the ordinary build): runs the target once on every input of its corpus;
#   fuzz mode (--config=fuzz): libFuzzer for RELAY_FUZZ_SECONDS (default 20) from the
#   corpus, ASan + UBSan on. A crash fails the test; the input that caused it is kept in
#   the test's undeclared outputs (bazel-testlogs/fuzz/<target>/test.outputs/).
# Longer runs: tools/fuzz.sh.
set -euo pipefail
mode=$1 binary=$2 corpus=$3

if [[ "$mode" == replay ]]; then
  exec "$binary" "$corpus"
fi

seconds=${RELAY_FUZZ_SECONDS:-20}
work=${TEST_TMPDIR:-$(mktemp -d)}/corpus
artifacts=${TEST_UNDECLARED_OUTPUTS_DIR:-$work}/
mkdir -p "$work"
# New inputs go to a scratch directory (first), never into the corpus in the tree.
exec "$binary" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$artifacts" "$work" "$corpus"
