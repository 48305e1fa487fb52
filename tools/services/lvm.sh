#!/usr/bin/env bash
# A throwaway LVM volume group on a loop device, for the Lvm backend's tests.
#
#   tools/services/lvm.sh start   # idempotent; prints where the VG is
#   tools/services/lvm.sh stop    # detaches every loop device over the PV
#   tools/services/lvm.sh status  # 0 if the VG is there
#
# The lines on stdout are
#   NOVA_TEST_LVM_VG=<volume group>
#   NOVA_TEST_LVM_PV=<the loop device holding it>
#   NOVA_TEST_LVM_SYSTEM_DIR=<directory of the lvm.conf to run LVM with>
# Everything else goes to stderr.
#
# Why it looks like this: these machines have LVM metadata but no
# device-mapper (no /dev/<vg>/<lv> ever appears), and no udev. So every LVM
# command must run with the settings of the lvm.conf written here: scan the
# one loop device only, no udev, no activation, no metadata backups outside
# the state directory, synchronous I/O (faster here, see write_conf). Each
# test session makes a volume group of its own on a loop device of its own,
# with a copy of this lvm.conf that accepts that device alone
# (tests/functional/lvm_harness.py), so that test runs at once never touch
# each other's volumes; the group made here proves LVM works. Tests point
# LVM_SYSTEM_DIR at their lvm.conf, so the product code runs its ordinary
# lvcreate/lvremove unchanged. The tests then
# reach an LV's bytes through loop devices over its extents on the PV (the
# harness's device_path); stop detaches those too, so nothing is left:
# no loop device, no volume group, no process.
#
# State lives in ${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/lvm.
set -euo pipefail

STATE=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/lvm
BACKING=$STATE/pv.img
LOOPFILE=$STATE/loopdev
ETC=$STATE/etc
VG=${NOVA_TEST_LVM_VG_NAME:-nova_test_vg}
PV_SIZE_MB=${NOVA_TEST_LVM_PV_SIZE_MB:-4096}

log() { echo "lvm.sh: $*" >&2; }
die() { log "$*"; exit 1; }

lvm_cmd() {
    LVM_SYSTEM_DIR=$ETC LVM_SUPPRESS_FD_WARNINGS=1 "$@"
}

pv_loop() {
    # The loop device this script attached over its backing file, if any.
    local dev
    [ -f "$LOOPFILE" ] || return 1
    dev=$(cat "$LOOPFILE")
    [ -n "$dev" ] || return 1
    losetup -j "$BACKING" 2>/dev/null | cut -d: -f1 | grep -qx "$dev" || \
        return 1
    echo "$dev"
}

write_conf() {
    local dev=$1
    mkdir -p "$ETC" "$STATE/backup" "$STATE/archive"
    cat > "$ETC/lvm.conf" <<EOF
# Written by tools/services/lvm.sh (tests only): LVM metadata on one loop
# device, without device-mapper or udev.
devices {
    filter = [ "a|^$dev\$|", "r|.*|" ]
    global_filter = [ "a|^$dev\$|", "r|.*|" ]
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
}
global {
    activation = 0
    # Synchronous reads: an LVM command that set up an asynchronous I/O
    # context spends ~30 ms of its ~45 in io_destroy() on exit, waiting
    # for the kernel. Only lvm.conf can set this: by the time a --config
    # argument is applied, the context exists.
    use_aio = 0
}
backup {
    backup_dir = "$STATE/backup"
    archive_dir = "$STATE/archive"
}
EOF
}

status() {
    local dev
    dev=$(pv_loop) || return 1
    lvm_cmd vgs "$VG" >/dev/null 2>&1
}

print_vars() {
    echo "NOVA_TEST_LVM_VG=$VG"
    echo "NOVA_TEST_LVM_PV=$1"
    echo "NOVA_TEST_LVM_SYSTEM_DIR=$ETC"
}

start() {
    local dev
    if status; then
        dev=$(pv_loop)
        log "already running (VG $VG on $dev)"
        print_vars "$dev"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "must run as root (it attaches loop devices)"
    command -v vgcreate >/dev/null || \
        die "no vgcreate (run tools/install-system-deps.sh)"
    stop  # what a half-done start left
    mkdir -p "$STATE"
    truncate -s "${PV_SIZE_MB}M" "$BACKING"
    dev=$(losetup --find --show "$BACKING")
    echo "$dev" > "$LOOPFILE"
    write_conf "$dev"
    lvm_cmd pvcreate -q -y "$dev" >&2
    lvm_cmd vgcreate -q "$VG" "$dev" >&2
    log "VG $VG on $dev ($PV_SIZE_MB MiB)"
    print_vars "$dev"
}

detach_over() {
    # Detach every loop device whose backing file is $1.
    local dev
    for dev in $(losetup -j "$1" 2>/dev/null | cut -d: -f1); do
        losetup -d "$dev" 2>/dev/null || log "could not detach $dev"
    done
}

stop() {
    local dev
    if [ -f "$LOOPFILE" ]; then
        dev=$(cat "$LOOPFILE")
        # The harness's aliases over LVs' extents sit on the PV's device.
        [ -n "$dev" ] && detach_over "$dev"
    fi
    [ -f "$BACKING" ] && detach_over "$BACKING"
    rm -rf "$STATE"
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
