#!/usr/bin/env bash
# A private PostgreSQL 15 server for the database tests.
#
#   tools/services/postgresql.sh start   # idempotent; prints the admin URL
#   tools/services/postgresql.sh stop    # stops by pid file and waits
#
# State lives in ${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/postgresql.
# The server listens on 127.0.0.1 on a free port, with fsync off (test data
# only), and has oslo.db's opportunistic user and database openstack_citest
# (password openstack_citest, allowed to create databases).
#
# The only line on stdout is
#   NOVA_TEST_POSTGRESQL_URL=postgresql+psycopg2://openstack_citest:...
# so that callers can `eval "$(tools/services/postgresql.sh start)"` or
# `export "$(...)"`. Everything else goes to stderr.
#
# initdb refuses to run as root, so the server runs as the user postgres;
# the state directory's parents must be traversable by that user.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}
STATE=${NOVA_TEST_SERVICES_DIR:-/tmp/nova-test-services}/postgresql
DATA=$STATE/data
PORT_FILE=$STATE/port
LOG=$STATE/postgresql.log
CITEST=openstack_citest

log() { echo "postgresql.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

as_pg() {
    if [ "$(id -un)" = "$PG_USER" ]; then
        "$@"
    else
        runuser -u "$PG_USER" -- "$@"
    fi
}

server_pid() {
    # The postmaster's pid, if one is running on our data directory.
    local pid
    [ -f "$DATA/postmaster.pid" ] || return 1
    pid=$(head -n1 "$DATA/postmaster.pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

psql_admin() {
    as_pg "$PG_BIN/psql" -X -q -h "$STATE" -p "$(cat "$PORT_FILE")" \
        -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

print_url() {
    echo "NOVA_TEST_POSTGRESQL_URL=postgresql+psycopg2://$CITEST:$CITEST@127.0.0.1:$(cat "$PORT_FILE")/$CITEST"
}

init_cluster() {
    log "initialising $DATA"
    mkdir -p "$STATE"
    chown "$PG_USER" "$STATE"
    chmod 700 "$STATE"
    as_pg test -w "$STATE" || die "$STATE is not reachable by user $PG_USER"
    as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres -E UTF8 --no-locale --no-sync \
        --auth-local=trust --auth-host=scram-sha-256 >&2
    # Test data only: durability is not wanted, speed is.
    cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STATE'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
}

start() {
    if server_pid >/dev/null && [ -f "$PORT_FILE" ]; then
        log "already running (pid $(server_pid), port $(cat "$PORT_FILE"))"
        print_url
        return 0
    fi
    [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL 15 in $PG_BIN (run tools/install-system-deps.sh)"
    [ -f "$DATA/PG_VERSION" ] || init_cluster
    free_port > "$PORT_FILE"
    log "starting on 127.0.0.1:$(cat "$PORT_FILE")"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-p $(cat "$PORT_FILE")" start >&2; then
        tail -n 20 "$LOG" >&2 || true
        die "server did not start"
    fi
    psql_admin <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$CITEST') THEN
        CREATE ROLE $CITEST LOGIN CREATEDB PASSWORD '$CITEST';
    END IF;
END
\$\$;
SQL
    if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$CITEST'")" ]; then
        psql_admin -c "CREATE DATABASE $CITEST OWNER $CITEST"
    fi
    print_url
}

stop() {
    local pid
    if ! pid=$(server_pid); then
        log "not running"
        return 0
    fi
    stop_pid "$pid" INT    # fast shutdown: roll back and exit
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) server_pid >/dev/null ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
