#!/usr/bin/env bash
# Fails when a package depends (through its targets) on a package that depends on it:
# the package graph must have no cycle. Visibility keeps new back-edges out; this
# catches what visibility was widened to allow. Run from the workspace: .ci/run does.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(tools/bazel query '//...' --output=package 2>/dev/null)
graph=""
for package in $packages; do
  deps=$(tools/bazel query "deps(//$package:all, 1) except //$package:all" --output=package 2>/dev/null |
         grep -v '^@' | grep -vx "$package" | tr '\n' ' ' || true)
  graph+="$package: $deps"$'\n'
done
python3 - "$graph" <<'PY'
import sys
graph = {}
for line in sys.argv[1].splitlines():
    package, _, deps = line.partition(":")
    graph[package.strip()] = set(deps.split())
in_cycle = []
for start in graph:
    seen, stack = set(), list(graph[start])
    while stack:
        package = stack.pop()
        if package not in seen:
            seen.add(package)
            stack.extend(graph.get(package, ()))
    if start in seen:
        in_cycle.append(start)
if in_cycle:
    print("layering: packages in a dependency cycle: " + ", ".join(sorted(in_cycle)))
    sys.exit(1)
print(f"layering: {len(graph)} packages, no cycle")
PY
