#!/usr/bin/env bash
# The test command: on a fresh Debian 12 machine, as root, installs what the
# tests need and runs every test (unit and functional) against real qemu-img,
# libvirt (test driver and libvirtd with KVM), PostgreSQL and MariaDB.
# Extra arguments go to pytest, e.g. `tools/test.sh -k qcow2 -x`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)

# Disk (see doc/testing.rst): besides the Debian packages, the venvs take
# about 1 GB and the tests at most about 3.5 GB at once in the temporary
# directory. A run that fills the disk does not fail cleanly (MariaDB waits
# for space), so it refuses to start without room.
need_gib=${NOVA_TEST_MIN_FREE_GIB:-8}
tmp=${TMPDIR:-/tmp}
free_gib=$(( $(df --output=avail -k "$tmp" | tail -1) / 1024 / 1024 ))
if (( free_gib < need_gib )); then
  echo "tools/test.sh: $tmp has $free_gib GiB free; the tests need" \
       "$need_gib GiB (NOVA_TEST_MIN_FREE_GIB) and would fill the disk" >&2
  exit 1
fi

bash tools/install-system-deps.sh
bash tools/bootstrap-venv.sh
.venv/bin/tox -e py3 -- "$@"
echo "tools/test.sh: done in $(( $(date +%s) - start )) s" >&2
