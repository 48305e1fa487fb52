#!/usr/bin/env bash
# Creates .venv (once) with this project installed editable and tox, pinned by
# constraints.txt. Idempotent: a complete venv is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import nova.conf, tox' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" \
    -r "$ROOT/requirements.txt" -r "$ROOT/test-requirements.txt" tox
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
fi
echo "bootstrap-venv: $VENV ready" >&2
