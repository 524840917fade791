#!/usr/bin/env bash
# Runs the unit and e2e suites under a sanitizer (docs/SECURITY.md "Sanitizers"):
#
#   tools/sanitize.sh asan [BAZEL TEST FLAGS...]
#
# asan: AddressSanitizer + UndefinedBehaviorSanitizer (.bazelrc --config=asan), in an
# output base of its own (~/.cache/relay-asan) so the ordinary build's cache stays.
# The targets are listed by the ordinary build's query: from another output base,
# `//...` would descend into this workspace's bazel-* symlinks.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-}
case "$config" in
  asan) ;;
  -h|--help|"") sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; [[ -n "$config" ]]; exit $? ;;
  *) echo "tools/sanitize.sh: unknown sanitizer \"$config\" (asan)" >&2; exit 2 ;;
esac
shift
mapfile -t targets < <(tools/bazel query 'tests(//...)' 2>/dev/null)
exec tools/bazel --output_base="$HOME/.cache/relay-$config" test --config="$config" --symlink_prefix=/ "$@" \
  "${targets[@]}"
