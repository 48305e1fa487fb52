#!/usr/bin/env bash
# A virtualenv holding the published Nova 34.0.0, for the tests that prove
# compatibility against the real upstream code (its objects, its database
# migrations, its imagebackend), each run in a process of its own.
#
#   tools/upstream/venv.sh        # idempotent; prints NOVA_TEST_UPSTREAM_PYTHON=...
#
# The venv lives outside the work tree so that it is reused between runs and
# clones: ${NOVA_UPSTREAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nova-libvirt/nova-34.0.0}.
# Its packages are pinned by constraints.txt beside this script (a pip freeze
# of a working install); a change to that file or to this script rebuilds it.
# Besides nova itself it holds the database drivers upstream lacks
# (psycopg2-binary, PyMySQL) and oslo.utils' image inspection extra.
# libvirt-python is not installed: upstream imports libvirt lazily, and the
# tests never start upstream's driver against a hypervisor.
# Run it with -P (or from outside the work tree): this project is also
# called nova, and the current directory would shadow the installed one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${NOVA_UPSTREAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nova-libvirt/nova-34.0.0}
PY=${PYTHON:-python3}
STAMP=$VENV/.nova-libvirt-stamp
want=$(cat "$HERE/constraints.txt" "$0" | sha256sum | cut -d' ' -f1)

log() { echo "upstream/venv.sh: $*" >&2; }

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] ||
   ! "$VENV/bin/python" -P -c 'import nova.objects, psycopg2, pymysql' 2>/dev/null; then
  start=$(date +%s)
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
  "$VENV/bin/python" -m pip install -q -c "$HERE/constraints.txt" \
    nova==34.0.0 'oslo.utils[image-inspection]' psycopg2-binary PyMySQL >&2
  "$VENV/bin/python" -P -c 'import nova.objects, nova.db.main.api' >&2
  echo "$want" > "$STAMP"
  log "nova 34.0.0 installed in $VENV in $(( $(date +%s) - start )) s"
fi
echo "NOVA_TEST_UPSTREAM_PYTHON=$VENV/bin/python"
