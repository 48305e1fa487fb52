#!/usr/bin/env bash
# Runs every benchmark in bench/. Each prints ratios against a baseline that
# it measures in the same run (absolute times on these machines are noise).
# Arguments are passed to each benchmark. Run as root: cold runs drop the
# page cache. The benchmarks run under tools/with-services.sh with the
# reflink XFS only (NOVA_TEST_SERVICES to change that), which also names
# upstream Nova's venv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
export NOVA_TEST_SERVICES=${NOVA_TEST_SERVICES:-xfs}
status=0
for bench in "$ROOT"/bench/bench_*.py; do
  echo "=== $(basename "$bench")"
  "$ROOT/tools/with-services.sh" "$PYTHON" "$bench" "$@" || status=1
done
exit $status
