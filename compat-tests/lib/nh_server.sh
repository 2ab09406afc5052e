# nh_server.sh: start and stop one nuthatch for a compatibility test.
# Source it, then:
#
#     nh_start [--KEY VALUE]...   # fresh data dir (the first time), loopback, a free port
#     ... use $NH_BOOTSTRAP (127.0.0.1:PORT) ...
#     nh_stop                     # SIGTERM; returns the server's exit status
#
# NUTHATCH names the binary (default: build/nuthatch of this tree).  The
# server's log is in $NH_DIR/server.log; nh_start fails (status 1) when the
# server does not listen within 20 s.  nh_stop waits at most 15 s, then
# kills.  An EXIT trap stops a server left running and removes $NH_DIR
# (kept when NH_KEEP=1).

NH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NUTHATCH=${NUTHATCH:-$NH_ROOT/build/nuthatch}
NH_PID=
NH_DIR=
NH_BOOTSTRAP=
NH_PORT=

nh_log() { echo "nh_server: $*" >&2; }

# The port the server logged as bound ("listening on 127.0.0.1:PORT").
nh_logged_port() {
    sed -n 's/.* listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$NH_DIR/server.log" | head -1
}

nh_start() {
    if [ ! -x "$NUTHATCH" ]; then
        nh_log "no executable at $NUTHATCH (build first, or set NUTHATCH)"
        return 1
    fi
    # The first start makes a fresh directory; later ones reuse its data
    # (a restart).
    [ -n "$NH_DIR" ] || NH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nh-compat.XXXXXX") || return 1
    [ ! -f "$NH_DIR/server.log" ] || cat "$NH_DIR/server.log" >>"$NH_DIR/server.log.old"
    # Port 0: the kernel picks a free port and the log says which; the
    # advertised listener, derived from it, follows the bound port.
    "$NUTHATCH" --data.dir "$NH_DIR/data" --listeners PLAINTEXT://127.0.0.1:0 \
        --log.level "${NH_LOG_LEVEL:-info}" \
        "$@" >"$NH_DIR/server.log" 2>&1 </dev/null &
    NH_PID=$!
    local i
    for i in $(seq 1 200); do
        NH_PORT=$(nh_logged_port)
        if [ -n "$NH_PORT" ] && kill -0 "$NH_PID" 2>/dev/null; then
            NH_BOOTSTRAP=127.0.0.1:$NH_PORT
            export NH_BOOTSTRAP NH_PORT NH_PID NH_DIR
            return 0
        fi
        if ! kill -0 "$NH_PID" 2>/dev/null; then
            nh_log "nuthatch exited before listening:"
            cat "$NH_DIR/server.log" >&2
            NH_PID=
            return 1
        fi
        sleep 0.1
    done
    nh_log "nuthatch did not listen within 20 s:"
    cat "$NH_DIR/server.log" >&2
    nh_kill
    return 1
}

nh_kill() {
    [ -n "$NH_PID" ] || return 0
    kill -KILL "$NH_PID" 2>/dev/null
    wait "$NH_PID" 2>/dev/null
    NH_PID=
}

# Stop with SIGTERM; the server's exit status (124 when it had to be killed).
nh_stop() {
    [ -n "$NH_PID" ] || return 0
    kill -TERM "$NH_PID" 2>/dev/null
    local i
    for i in $(seq 1 150); do
        if ! kill -0 "$NH_PID" 2>/dev/null; then
            wait "$NH_PID"
            local status=$?
            NH_PID=
            return $status
        fi
        sleep 0.1
    done
    nh_log "nuthatch did not stop within 15 s of SIGTERM; killing it"
    nh_kill
    return 124
}

nh_cleanup() {
    nh_kill
    if [ -n "$NH_DIR" ] && [ "${NH_KEEP:-0}" != 1 ]; then
        rm -rf "$NH_DIR"
    fi
}
trap nh_cleanup EXIT
