#!/usr/bin/env bash
# An XFS filesystem with reflink, for the tests of copies that share extents
# (FICLONE) instead of copying data.
#
#   tools/services/xfs.sh start    # idempotent; prints the mount point
#   tools/services/xfs.sh stop     # unmounts and frees the loop device
#   tools/services/xfs.sh status   # 0 if mounted by this script
#
# The only line on stdout is
#   NOVA_TEST_XFS_DIR=<mount point>
# Everything else goes to stderr.
#
# What start does: a sparse file of $XFS_SIZE (2G) in the state directory,
# `mkfs.xfs -m reflink=1` on it, a loop device over it (losetup), mounted at
# a directory of the state directory. The root filesystem of these machines
# (ext4) has no reflink, hence a filesystem of its own. A start that fails
# half-way undoes what it did, and stop also frees loop devices left over
# the image by an earlier failure.
#
# State lives in ${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/xfs.
set -euo pipefail

STATE=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/xfs
IMG=$STATE/xfs.img
MNT=$STATE/mnt
SIZE=${XFS_SIZE:-2G}

log() { echo "xfs.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

mounted() {
    # Our image is mounted at $MNT, as XFS.
    [ "$(findmnt -n -o FSTYPE --mountpoint "$MNT" 2>/dev/null)" = xfs ]
}

loop_devices() {
    # Every loop device over our image (normally one, or none).
    [ -e "$IMG" ] || return 0
    losetup -n -O NAME -j "$IMG" 2>/dev/null || true
}

start() {
    local dev
    if mounted; then
        log "already mounted at $MNT"
        echo "NOVA_TEST_XFS_DIR=$MNT"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "must run as root (it mounts a filesystem)"
    command -v mkfs.xfs >/dev/null || \
        die "no mkfs.xfs (run tools/install-system-deps.sh)"
    # Whatever an earlier, interrupted run left.
    stop
    trap 'log "start failed; undoing it"; stop' ERR
    mkdir -p "$STATE" "$MNT"
    rm -f "$IMG"
    truncate -s "$SIZE" "$IMG"
    mkfs.xfs -q -m reflink=1 "$IMG"
    dev=$(losetup --find --show "$IMG")
    log "image $IMG on $dev"
    mount -t xfs "$dev" "$MNT"
    chmod 0700 "$MNT"
    trap - ERR
    mounted || { stop; die "$MNT is not an XFS mount after mount"; }
    log "mounted at $MNT (reflink=1)"
    echo "NOVA_TEST_XFS_DIR=$MNT"
}

stop() {
    local dev i
    if findmnt --mountpoint "$MNT" >/dev/null 2>&1; then
        log "unmounting $MNT"
        # A process of the tests may still be closing a file: retry a few
        # seconds before giving up.
        for i in $(seq 1 50); do
            umount "$MNT" 2>/dev/null && break
            sleep 0.1
        done
        findmnt --mountpoint "$MNT" >/dev/null 2>&1 && \
            die "$MNT is still busy; left mounted"
    fi
    for dev in $(loop_devices); do
        log "freeing $dev"
        losetup -d "$dev"
    done
    rm -f "$IMG"
    if [ -d "$MNT" ]; then
        rmdir "$MNT" 2>/dev/null || true
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) mounted ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
