#!/usr/bin/env bash
# The main job on the embedded defaults: on a fresh Debian 12 machine, as
# root, installs what is needed, then makes a small image, imports it, boots
# an instance with root, ephemeral and swap disks (each disk's layout record
# is saved before the disk is made), shows it, destroys it, and deletes the
# image.
#
# Everything lands in one state directory (default
# ~/.local/state/nova-libvirt; set NOVA_DEMO_STATE to use another): the
# SQLite database, the image store, the instances and the locks. The
# hypervisor is libvirt's in-process test driver, so no daemon is needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash tools/install-system-deps.sh
bash tools/bootstrap-venv.sh

CLI=("$ROOT/.venv/bin/nova-libvirt")
if [ -n "${NOVA_DEMO_STATE:-}" ]; then
  CLI+=(--state_path "$NOVA_DEMO_STATE")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== making a 1 GiB sparse qcow2 image holding 16 MiB of data"
qemu-img create -q -f raw "$work/demo.raw" 1G
head -c 16M /dev/urandom | dd of="$work/demo.raw" conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$work/demo.raw" "$work/demo.qcow2"

echo "== nova-libvirt image-import"
image_id=$("${CLI[@]}" --format json image-import "$work/demo.qcow2" \
             --disk-format qcow2 --name demo |
           "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"${CLI[@]}" image-list

echo "== nova-libvirt boot (root 2 GB, ephemeral 1 GB, swap 512 MB)"
instance=$("${CLI[@]}" --format json boot --image "$image_id" --root-gb 2 \
             --ephemeral-gb 1 --swap-mb 512 --name demo |
           "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')

echo "== nova-libvirt show $instance"
"${CLI[@]}" show "$instance"

echo "== nova-libvirt list"
"${CLI[@]}" list

echo "== nova-libvirt destroy $instance"
"${CLI[@]}" destroy "$instance"
"${CLI[@]}" list

echo "== nova-libvirt image-delete $image_id (no disk is made from it any more)"
"${CLI[@]}" image-delete "$image_id"
