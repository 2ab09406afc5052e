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
#
# NH_BACKEND picks the stores: "embedded" (the default: the directory object
# store and SQLite under $NH_DIR/data) or "s3": the first nh_start starts an
# etcd and an S3 server for this test (lib/services.sh; the test exits 77
# when they are not installed), and every start of the gateway uses them
# (--storage.url s3://..., --metadata.url etcd://..., s3rver's test
# credentials), so a restart finds the data again.  The gateway still gets
# --data.dir $NH_DIR/data, and nh_stop fails (status 1) if anything was
# written there.  nh_object_files lists the flush objects as files on disk
# in either mode.  NH_S3_ADDRESSING=virtual makes the gateway name the
# bucket in the host name (BUCKET.s3.localhost) instead of the path.

NH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NUTHATCH=${NUTHATCH:-$NH_ROOT/build/nuthatch}
NH_BACKEND=${NH_BACKEND:-embedded}
NH_PID=
NH_DIR=
NH_BOOTSTRAP=
NH_PORT=
# shellcheck source=services.sh
. "$NH_ROOT/compat-tests/lib/services.sh"

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
    local stores=()
    case "$NH_BACKEND" in
    embedded) ;;
    s3)
        local rc=0
        nh_services_start || rc=$?
        if [ "$rc" -eq 77 ]; then
            nh_log "NH_BACKEND=s3 needs etcd and s3rver: skipped"
            exit 77
        fi
        [ "$rc" -eq 0 ] || return 1
        local s3q="endpoint=$NH_S3_ENDPOINT"
        # Virtual-hosted: BUCKET.s3.localhost, which curl resolves to loopback.
        [ "${NH_S3_ADDRESSING:-path}" != virtual ] ||
            s3q="endpoint=http://s3.localhost:${NH_S3_ENDPOINT##*:}&addressing=virtual"
        stores=(--storage.url "s3://$NH_S3_BUCKET/nh?$s3q"
            --metadata.url "etcd://$NH_ETCD_ENDPOINTS/nh-compat")
        ;;
    *)
        nh_log "NH_BACKEND=$NH_BACKEND: expected embedded or s3"
        return 1
        ;;
    esac
    # Port 0: the kernel picks a free port and the log says which; the
    # advertised listener, derived from it, follows the bound port.
    AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
        "$NUTHATCH" --data.dir "$NH_DIR/data" --listeners PLAINTEXT://127.0.0.1:0 \
        --log.level "${NH_LOG_LEVEL:-info}" "${stores[@]}" \
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
            if [ "$NH_BACKEND" = s3 ] && [ -e "$NH_DIR/data" ]; then
                nh_log "NH_BACKEND=s3: the gateway wrote under data.dir: $(find "$NH_DIR/data" | head -5)"
                status=1
            fi
            return $status
        fi
        sleep 0.1
    done
    nh_log "nuthatch did not stop within 15 s of SIGTERM; killing it"
    nh_kill
    return 124
}

# The flush objects as files: under data.dir/objects (embedded), or in
# s3rver's directory (s3), one path a line.  The directory store's empty
# file created ahead of the next put is no object yet.
nh_object_files() {
    if [ "$NH_BACKEND" = s3 ]; then
        [ -z "$NH_S3_DIR" ] || find "$NH_S3_DIR/$NH_S3_BUCKET" -type f -name '*.nho._S3rver_object'
    else
        find "$NH_DIR/data/objects" -type f -name '*.nho' -size +0 2>/dev/null
    fi
}

nh_cleanup() {
    nh_kill
    nh_services_stop
    if [ -n "$NH_DIR" ] && [ "${NH_KEEP:-0}" != 1 ]; then
        rm -rf "$NH_DIR"
    fi
}
trap nh_cleanup EXIT
