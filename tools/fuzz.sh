#!/usr/bin/env bash
# Runs relay's libFuzzer targets (//fuzz) for longer than CI does, in parallel, and prints
# each target's executions and result. Builds with --config=fuzz (clang, ASan, UBSan) in
# an output base of its own, so the ordinary build's cache stays as it is.
#
#   tools/fuzz.sh [--seconds=N | --runs=N [--chunk=M]] [--jobs=N] [--work=DIR] [TARGET ...]
#
#   --seconds=N  how long each target fuzzes (default 600)
#   --runs=N     fuzz each target for N executions instead (docs/SECURITY.md: 10000000)
#   --chunk=M    with --runs: start a fresh fuzzer process every M executions, each from
#                the corpus the last one grew (default 500000). ASan's bookkeeping grows
#                by 1 to 3 KB per execution (allocation stacks, quarantine) in a
#                yaml-cpp parse, so one process of 10 million would pass -rss_limit_mb.
#   --jobs=N     targets fuzzing at once (default: the number of cores)
#   --work=DIR   where each target's growing corpus and any crash are kept between runs
#                (default /tmp/relay-fuzz); the seed corpora in fuzz/corpus stay untouched
#   TARGET       pem csr certificate values journal resource_names bootstrap_token
#                secrets_directory (default: all)
#
# A crash leaves DIR/<target>/crash-* (the input) and DIR/<target>/fuzz.log (the report;
# every chunk's output, appended);
# make the fix, then copy the input to fuzz/corpus/<target>/ as a regression input.
# Exit status: 0 when no target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(pem csr certificate values journal resource_names bootstrap_token secrets_directory)
seconds=600
runs=""
chunk=500000
jobs=$(nproc)
work=/tmp/relay-fuzz
targets=()
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds=${arg#*=} ;;
    --runs=*) runs=${arg#*=} ;;
    --chunk=*) chunk=${arg#*=} ;;
    --jobs=*) jobs=${arg#*=} ;;
    --work=*) work=${arg#*=} ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "tools/fuzz.sh: unknown flag $arg (see --help)" >&2; exit 2 ;;
    *)
      if [[ ! " ${all_targets[*]} " == *" $arg "* ]]; then
        echo "tools/fuzz.sh: no fuzz target \"$arg\"; the targets are: ${all_targets[*]}" >&2
        exit 2
      fi
      targets+=("$arg") ;;
  esac
done
(( ${#targets[@]} > 0 )) || targets=("${all_targets[@]}")
[[ "$seconds$runs" =~ ^[0-9]+$ && "$chunk" =~ ^[1-9][0-9]*$ ]] ||
  { echo "tools/fuzz.sh: --seconds, --runs and --chunk take whole numbers (--chunk above 0)" >&2; exit 2; }

bazel=(tools/bazel --output_base="${RELAY_FUZZ_OUTPUT_BASE:-$HOME/.cache/relay-fuzz}")
labels=()
for target in "${targets[@]}"; do labels+=("//fuzz:${target}_fuzzer"); done
"${bazel[@]}" build --config=fuzz --symlink_prefix=/ "${labels[@]}"
bin=$("${bazel[@]}" info --config=fuzz bazel-bin 2>/dev/null)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# One fuzzer process on `target` with `limit` (-max_total_time=S or -runs=N); its output
# appended to the target's fuzz.log. Prints its executions (nothing when it printed no
# final stats); returns the fuzzer's status.
fuzz_process() {
  local target=$1 limit=$2 dir="$work/$1" status=0
  "$bin/fuzz/${target}_fuzzer" "$limit" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$dir/corpus" "fuzz/corpus/$target" >"$dir/process.log" 2>&1 || status=$?
  cat "$dir/process.log" >>"$dir/fuzz.log"
  sed -n 's/^stat::number_of_executed_units: *//p' "$dir/process.log" | tail -n 1
  rm -f "$dir/process.log"
  return "$status"
}

fuzz_one() {
  local target=$1 dir="$work/$1"
  mkdir -p "$dir/corpus"
  : >"$dir/fuzz.log"
  local start=$SECONDS status=0 executions=0 ran
  if [[ -z "$runs" ]]; then
    executions=$(fuzz_process "$target" -max_total_time="$seconds") || status=$?
  else
    while (( status == 0 && executions < runs )); do
      local this=$(( runs - executions < chunk ? runs - executions : chunk ))
      ran=$(fuzz_process "$target" -runs="$this") || status=$?
      if [[ ! "$ran" =~ ^[1-9][0-9]*$ ]]; then
        (( status != 0 )) || status=1
        break
      fi
      executions=$(( executions + ran ))
    done
  fi
  local result=ok
  (( status == 0 )) || result="CRASH (exit $status; see $dir/fuzz.log)"
  printf '%-18s %12s executions %6s s  %s\n' "$target" "${executions:-?}" $((SECONDS - start)) "$result"
}

budget="$seconds s"
[[ -z "$runs" ]] || budget="$runs runs in processes of $chunk"
echo "fuzzing ${targets[*]} ($budget each, $jobs at once; work in $work)"
mkdir -p "$work"
results="$work/results.txt"
: >"$results"
for target in "${targets[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs )); do wait -n || true; done
  fuzz_one "$target" | tee -a "$results" &
done
wait
! grep -q CRASH "$results"
