#!/usr/bin/env bash
# The test command: on a fresh Debian 12 machine, as root, installs what the
# tests need and runs every test (unit and functional) against real qemu-img,
# libvirt (test driver and libvirtd with KVM), PostgreSQL and MariaDB.
# Extra arguments go to pytest, e.g. `tools/test.sh -k qcow2 -x`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
bash tools/install-system-deps.sh
bash tools/bootstrap-venv.sh
.venv/bin/tox -e py3 -- "$@"
echo "tools/test.sh: done in $(( $(date +%s) - start )) s" >&2
