#!/usr/bin/env bash
# Runs a command with the real services the functional tests need:
#   PostgreSQL and MariaDB on 127.0.0.1 (throwaway servers, fsync off),
#   libvirtd with KVM (qemu:///system) and an LVM volume group on a loop
#   device (tools/services/lvm.sh), an XFS with reflink on a loop file
#   (tools/services/xfs.sh); and the venv holding upstream Nova
#   34.0.0 (tools/upstream/venv.sh), named by NOVA_TEST_UPSTREAM_PYTHON.
# Each tools/services/<name>.sh start prints KEY=VALUE lines that tell the
# tests where the service is; they are exported for the command. Every
# service this script started is stopped when the command ends, whatever its
# outcome; one that was already running (a developer's) is left running.
#
# Usage: tools/with-services.sh COMMAND [ARGS...]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SERVICES=${NOVA_TEST_SERVICES:-postgresql mariadb libvirtd lvm xfs}
export NOVA_TEST_SERVICES_DIR=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}

started=()
stop_all() {
  for svc in "${started[@]}"; do
    bash "$HERE/services/$svc.sh" stop >&2 || true
  done
}
trap stop_all EXIT

for svc in $SERVICES; do
  t0=$(date +%s%N)
  was_running=false
  bash "$HERE/services/$svc.sh" status && was_running=true
  vars=$(bash "$HERE/services/$svc.sh" start)
  $was_running || started+=("$svc")
  while IFS= read -r line; do
    case "$line" in
      NOVA_TEST_*=*) export "${line?}" ;;
    esac
  done <<<"$vars"
  echo "with-services: $svc up in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
done

# Upstream Nova 34.0.0, in a venv of its own, for the compatibility tests.
while IFS= read -r line; do
  case "$line" in
    NOVA_TEST_*=*) export "${line?}" ;;
  esac
done <<<"$(bash "$HERE/upstream/venv.sh")"

"$@"
