#!/usr/bin/env bash
# Runs every benchmark in bench/. Each prints ratios against a baseline that
# it measures in the same run (absolute times on these machines are noise).
# Arguments are passed to each benchmark.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bench in "$ROOT"/bench/bench_*.py; do
  echo "=== $(basename "$bench")"
  python "$bench" "$@" || status=1
done
exit $status
