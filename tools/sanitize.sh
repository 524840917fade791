#!/usr/bin/env bash
# Runs the unit and e2e suites under a sanitizer (docs/SECURITY.md "Sanitizers"):
#
#   tools/sanitize.sh asan|tsan [BAZEL TEST FLAGS...]
#
# asan: AddressSanitizer + UndefinedBehaviorSanitizer (.bazelrc --config=asan).
# tsan: ThreadSanitizer with Abseil built from Debian's source package; the targets that
#   link gRPC are skipped (they and Debian's gRPC use Debian's uninstrumented Abseil).
# Each in an output base of its own (~/.cache/relay-<sanitizer>) so the ordinary
# build's cache stays. From another output base `//...` would descend into this
# workspace's bazel-* symlinks, so asan lists the tests by the ordinary build's query
# and tsan names each top-level package tree (patterns let Bazel skip what is
# incompatible, where a named target would be an error).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-}
case "$config" in
  asan|tsan) ;;
  -h|--help|"") sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; [[ -n "$config" ]]; exit $? ;;
  *) echo "tools/sanitize.sh: unknown sanitizer \"$config\" (asan, tsan)" >&2; exit 2 ;;
esac
shift
if [[ "$config" == asan ]]; then
  mapfile -t targets < <(tools/bazel query 'tests(//...)' 2>/dev/null)
else
  mapfile -t targets < <(find . -mindepth 2 -name BUILD.bazel -not -path './bazel-*' -not -path './.*' |
    cut -d/ -f2 | sort -u | sed 's|.*|//&/...|')
fi
options=()
if [[ "$config" == tsan ]]; then
  options=("--test_env=TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/bazel/tsan_suppressions.txt")
fi
exec tools/bazel --output_base="$HOME/.cache/relay-$config" test --config="$config" --symlink_prefix=/ \
  "${options[@]}" "$@" "${targets[@]}"
