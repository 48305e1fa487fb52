# Shared by the service scripts in this directory (sourced, not run).
# Each script defines log() before sourcing this.

# stop_pid PID SIGNAL: send SIGNAL, wait up to 30 s for PID to exit, then
# SIGKILL it and wait. Returns once the process is gone.
stop_pid() {
    local pid=$1 signal=$2 i
    log "stopping pid $pid"
    kill "-$signal" "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
        sleep 0.1
    done
    log "pid $pid ignored SIG$signal for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    log "stopped"
}
