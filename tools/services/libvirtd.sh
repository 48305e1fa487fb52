#!/usr/bin/env bash
# libvirtd with QEMU/KVM for the end-to-end tests, on a machine without
# systemd (see doc/testing.rst). A test setup: guests run as root with no
# security driver. It is not how to run libvirtd in production.
#
#   tools/services/libvirtd.sh start   # idempotent; prints the URI
#   tools/services/libvirtd.sh stop    # stops by pid file and waits
#
# The only line on stdout is
#   NOVA_TEST_LIBVIRT_URI=qemu:///system
# so that callers can `export "$(tools/services/libvirtd.sh start)"`.
# Everything else goes to stderr.
#
# What start does, and why:
# - libvirt-daemon-system is deliberately not installed (it pulls in
#   systemd-sysv), so nothing creates the user that libvirtd resolves before
#   it even reads qemu.conf: create libvirt-qemu if it is missing.
# - A private qemu.conf in the state directory: guests run as root (the
#   test disks are root's files), QEMU's output goes to files (no
#   virtlogd), and no security driver (no AppArmor/SELinux labelling here).
#   A system libvirtd reads qemu.conf only from /etc/libvirt, so libvirtd
#   runs in a mount namespace of its own (unshare) where the private file
#   is bind-mounted over /etc/libvirt/qemu.conf: the host's file is never
#   changed, and no other process sees the private one. (An empty
#   /etc/libvirt/qemu.conf is created only if the package shipped none:
#   the bind mount needs a target.)
# - libvirtd runs with a private config (no authentication on the local
#   UNIX socket, logs under the state directory) and its own pid file.
# - start returns once `virsh -c qemu:///system version` works.
#
# State lives in ${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/libvirtd.
set -euo pipefail

URI=qemu:///system
LIBVIRTD=${LIBVIRTD:-/usr/sbin/libvirtd}
STATE=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/libvirtd
PIDFILE=$STATE/libvirtd.pid
CONF=$STATE/libvirtd.conf
LOG=$STATE/libvirtd.log
QEMU_CONF=$STATE/qemu.conf
SYSTEM_QEMU_CONF=/etc/libvirt/qemu.conf
START_TIMEOUT_S=${LIBVIRTD_START_TIMEOUT_S:-30}

log() { echo "libvirtd.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

daemon_pid() {
    # The pid of the libvirtd this script started, if it still runs.
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

responds() {
    virsh -c "$URI" version >/dev/null 2>&1
}

ensure_user() {
    getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
    if ! getent passwd libvirt-qemu >/dev/null; then
        useradd -r -g libvirt-qemu -d /var/lib/libvirt \
            -s /usr/sbin/nologin libvirt-qemu
    fi
}

write_qemu_conf() {
    mkdir -p "$STATE"
    cat > "$QEMU_CONF" <<'EOF'
# Private qemu.conf of tools/services/libvirtd.sh (tests only).
user = "root"
group = "root"
stdio_handler = "file"
security_driver = "none"
EOF
    if [ ! -e "$SYSTEM_QEMU_CONF" ]; then
        mkdir -p "$(dirname "$SYSTEM_QEMU_CONF")"
        : > "$SYSTEM_QEMU_CONF"
    fi
}

write_libvirtd_conf() {
    mkdir -p "$STATE"
    cat > "$CONF" <<EOF
# Private libvirtd config of tools/services/libvirtd.sh (tests only).
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:$LOG"
EOF
}

start() {
    local i
    if daemon_pid >/dev/null && responds; then
        log "already running (pid $(daemon_pid))"
        echo "NOVA_TEST_LIBVIRT_URI=$URI"
        return 0
    fi
    if ! daemon_pid >/dev/null && responds; then
        # Someone else's libvirtd: use it, and leave it alone on stop.
        log "a libvirtd not started by this script already answers on $URI"
        echo "NOVA_TEST_LIBVIRT_URI=$URI"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "must run as root (it starts a system libvirtd)"
    [ -x "$LIBVIRTD" ] || die "no $LIBVIRTD (run tools/install-system-deps.sh)"
    command -v qemu-system-x86_64 >/dev/null || \
        die "no qemu-system-x86_64 (run tools/install-system-deps.sh)"
    [ -c /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable here"
    ensure_user
    write_qemu_conf
    write_libvirtd_conf
    mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt/qemu \
        /var/cache/libvirt
    if daemon_pid >/dev/null; then
        # Ours, but not answering: a stuck start. Begin again.
        stop
    fi
    rm -f "$PIDFILE"
    log "starting $LIBVIRTD (log $LOG)"
    command -v unshare >/dev/null || die "no unshare (util-linux)"
    # The private qemu.conf, seen by this libvirtd (and its children) only.
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private -- sh -c \
        'mount --bind "$1" "$2" && exec "$3" -d --config "$4" --pid-file "$5"' \
        sh "$QEMU_CONF" "$SYSTEM_QEMU_CONF" "$LIBVIRTD" "$CONF" "$PIDFILE" >&2
    for i in $(seq 1 $((START_TIMEOUT_S * 10))); do
        if responds; then
            log "up (pid $(daemon_pid || echo '?'))"
            echo "NOVA_TEST_LIBVIRT_URI=$URI"
            return 0
        fi
        if [ -f "$PIDFILE" ] && ! daemon_pid >/dev/null; then
            tail -n 20 "$LOG" >&2 2>/dev/null || true
            die "libvirtd exited during start"
        fi
        sleep 0.1
    done
    tail -n 20 "$LOG" >&2 2>/dev/null || true
    die "libvirtd did not answer on $URI within $START_TIMEOUT_S s"
}

stop() {
    local pid
    if pid=$(daemon_pid); then
        stop_pid "$pid" TERM
    else
        log "not running"
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) daemon_pid >/dev/null ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
