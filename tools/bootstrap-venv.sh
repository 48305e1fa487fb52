#!/usr/bin/env bash
# Creates .venv with this project installed editable and tox, pinned by
# constraints.txt. Idempotent: a venv installed from the same requirements
# and constraints is left alone; a change to either reinstalls.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
STAMP=$VENV/.nova-requirements.sha256
want=$(cat "$ROOT/requirements.txt" "$ROOT/test-requirements.txt" \
           "$ROOT/constraints.txt" "$ROOT/setup.cfg" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] ||
   ! "$VENV/bin/python" -c 'import nova.conf, tox' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" \
    -r "$ROOT/requirements.txt" -r "$ROOT/test-requirements.txt" tox
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  echo "$want" > "$STAMP"
fi
echo "bootstrap-venv: $VENV ready" >&2
