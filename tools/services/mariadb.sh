#!/usr/bin/env bash
# A private MariaDB server for the database tests.
#
#   tools/services/mariadb.sh start   # idempotent; prints the admin URL
#   tools/services/mariadb.sh stop    # stops by pid file and waits
#
# State lives in ${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/mariadb.
# The server listens on 127.0.0.1 on a free port, never syncs to disk (test
# data only), and has oslo.db's opportunistic user and database
# openstack_citest (password openstack_citest, allowed to create databases).
#
# The only line on stdout is
#   NOVA_TEST_MYSQL_URL=mysql+pymysql://openstack_citest:...
# Everything else goes to stderr.
set -euo pipefail

STATE=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/mariadb
DATA=$STATE/data
SOCK=$STATE/mariadbd.sock
PID_FILE=$STATE/mariadbd.pid
PORT_FILE=$STATE/port
LOG=$STATE/mariadbd.log
CITEST=openstack_citest

log() { echo "mariadb.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

server_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

sql_admin() {
    # Root over the private socket: unix_socket authentication.
    mariadb --no-defaults -S "$SOCK" -u root "$@"
}

print_url() {
    echo "NOVA_TEST_MYSQL_URL=mysql+pymysql://$CITEST:$CITEST@127.0.0.1:$(cat "$PORT_FILE")/$CITEST"
}

start() {
    local i
    if server_pid >/dev/null && [ -f "$PORT_FILE" ]; then
        log "already running (pid $(server_pid), port $(cat "$PORT_FILE"))"
        print_url
        return 0
    fi
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] ||
        die "no mariadbd (run tools/install-system-deps.sh)"
    mkdir -p "$STATE"
    if [ ! -d "$DATA/mysql" ]; then
        log "initialising $DATA"
        mariadb-install-db --no-defaults --datadir="$DATA" --user=root \
            --skip-test-db --auth-root-authentication-method=socket \
            >"$STATE/install.log" 2>&1 ||
            { cat "$STATE/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    free_port > "$PORT_FILE"
    rm -f "$SOCK" "$PID_FILE"
    log "starting on 127.0.0.1:$(cat "$PORT_FILE")"
    # Test data only: no binary log, no flushing, no doublewrite.
    setsid -f /usr/sbin/mariadbd --no-defaults --user=root \
        --datadir="$DATA" --socket="$SOCK" --pid-file="$PID_FILE" \
        --bind-address=127.0.0.1 --port="$(cat "$PORT_FILE")" \
        --skip-log-bin --skip-name-resolve \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        --innodb-flush-method=nosync --innodb-buffer-pool-size=128M \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --max-connections=200 --log-error="$LOG" </dev/null >/dev/null 2>&1
    for i in $(seq 1 300); do
        if sql_admin -e 'SELECT 1' >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    sql_admin -e 'SELECT 1' >/dev/null 2>&1 ||
        { tail -n 20 "$LOG" >&2 || true; die "server did not start"; }
    sql_admin <<SQL
CREATE USER IF NOT EXISTS '$CITEST'@'127.0.0.1' IDENTIFIED BY '$CITEST';
CREATE USER IF NOT EXISTS '$CITEST'@'localhost' IDENTIFIED BY '$CITEST';
GRANT ALL PRIVILEGES ON *.* TO '$CITEST'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$CITEST'@'localhost';
CREATE DATABASE IF NOT EXISTS $CITEST;
SQL
    print_url
}

stop() {
    local pid
    if ! pid=$(server_pid); then
        log "not running"
        return 0
    fi
    stop_pid "$pid" TERM
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) server_pid >/dev/null ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
