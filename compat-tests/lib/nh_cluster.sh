# nh_cluster.sh: several gateways sharing one etcd and one S3-protocol
# server (lib/services.sh), for the distributed-mode tests.  Source it, then:
#
#     nhc_init N                 # N gateways, node ids 1..N, each a fixed free port
#     nhc_start I [--KEY VALUE]...  # start (or restart) node I; waits until it listens
#     ... $NHC_BOOTSTRAP (every node's 127.0.0.1:PORT, comma-separated),
#         NHC_PORT[I], NHC_PID[I], the log in $NH_DIR/node$I.log ...
#     nhc_kill I                 # SIGKILL
#     nhc_stop I                 # SIGTERM; the node's exit status (124 when killed)
#
# Partition leaders of a topic ($TOPIC, $NPARTS partitions; set both first):
#
#     pl leaders|check ...       # lib/part_leaders.py, bounded in time
#     leaders_at I FILE          # node I's answer into FILE, once it knows all partitions
#     agree I J ...              # until nodes I, J, ... answer the same; left in $NH_DIR/lead
#     ports_of I J ...           # "I=PORT,J=PORT" for part_leaders.py check
#
# A node keeps its port across restarts (its advertised listener does not
# change).  The EXIT trap kills every node left and stops the services (via
# lib/nh_server.sh's cleanup).  Exits 77 when etcd or s3rver is missing.
# Extra arguments for every start: NHC_ARGS (an array).

# shellcheck source=nh_server.sh
. "$(dirname "${BASH_SOURCE[0]}")/nh_server.sh"

NHC_N=0
NHC_PID=()
NHC_PORT=()
NHC_BOOTSTRAP=
NHC_ARGS=()

nhc_init() {
    NHC_N=$1
    NH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nh-compat.XXXXXX") || return 1
    local rc=0
    nh_services_start || rc=$?
    if [ "$rc" -eq 77 ]; then
        nh_log "the cluster tests need etcd and s3rver: skipped"
        exit 77
    fi
    [ "$rc" -eq 0 ] || return 1
    local ports i
    read -r -a ports <<<"$(nh_free_ports "$NHC_N")"
    NHC_BOOTSTRAP=
    for ((i = 1; i <= NHC_N; i++)); do
        NHC_PORT[i]=${ports[i - 1]}
        NHC_PID[i]=
        NHC_BOOTSTRAP+="${NHC_BOOTSTRAP:+,}127.0.0.1:${NHC_PORT[i]}"
    done
    export NHC_BOOTSTRAP
}

nhc_start() {
    local i=$1 log
    shift
    log=$NH_DIR/node$i.log
    [ ! -f "$log" ] || cat "$log" >>"$log.old"
    AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
        "$NUTHATCH" --node.id "$i" --data.dir "$NH_DIR/data$i" \
        --listeners "PLAINTEXT://127.0.0.1:${NHC_PORT[i]}" \
        --log.level "${NH_LOG_LEVEL:-info}" \
        --storage.url "s3://$NH_S3_BUCKET/nh?endpoint=$NH_S3_ENDPOINT" \
        --metadata.url "etcd://$NH_ETCD_ENDPOINTS/nh-compat" \
        "${NHC_ARGS[@]}" "$@" >"$log" 2>&1 </dev/null &
    NHC_PID[i]=$!
    local t
    for t in $(seq 1 300); do
        if grep -q " listening on 127.0.0.1:${NHC_PORT[i]} " "$log"; then
            return 0
        fi
        if ! kill -0 "${NHC_PID[i]}" 2>/dev/null; then
            nh_log "node $i exited before listening:"
            cat "$log" >&2
            NHC_PID[i]=
            return 1
        fi
        sleep 0.1
    done
    nh_log "node $i did not listen within 30 s:"
    cat "$log" >&2
    nhc_kill "$i"
    return 1
}

nhc_kill() {
    local i=$1
    [ -n "${NHC_PID[i]:-}" ] || return 0
    kill -KILL "${NHC_PID[i]}" 2>/dev/null
    wait "${NHC_PID[i]}" 2>/dev/null
    NHC_PID[i]=
}

nhc_stop() {
    local i=$1 t
    [ -n "${NHC_PID[i]:-}" ] || return 0
    kill -TERM "${NHC_PID[i]}" 2>/dev/null
    for t in $(seq 1 150); do
        if ! kill -0 "${NHC_PID[i]}" 2>/dev/null; then
            wait "${NHC_PID[i]}"
            local status=$?
            NHC_PID[i]=
            return $status
        fi
        sleep 0.1
    done
    nh_log "node $i did not stop within 15 s of SIGTERM; killing it"
    nhc_kill "$i"
    return 124
}

nhc_cleanup() {
    local i
    for ((i = 1; i <= NHC_N; i++)); do
        nhc_kill "$i"
    done
    nh_cleanup
}
trap nhc_cleanup EXIT

pl() { timeout 120 /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/part_leaders.py" "$@"; }

# Leaders as node $1 answers them, into file $2 (retried while the topic is
# not yet known there or the views differ).
leaders_at() {
    local t
    for t in $(seq 1 50); do
        if pl leaders "127.0.0.1:${NHC_PORT[$1]}" "$TOPIC" >"$2" 2>/dev/null &&
            [ "$(wc -l <"$2")" = "$NPARTS" ]; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Wait until every node in "$@" answers the same leaders, left in $NH_DIR/lead.
agree() {
    local t i ok
    for t in $(seq 1 50); do
        ok=1
        for i in "$@"; do
            leaders_at "$i" "$NH_DIR/lead.$i" || {
                ok=0
                break
            }
            cmp -s "$NH_DIR/lead.$i" "$NH_DIR/lead.$1" || ok=0
        done
        [ "$ok" = 1 ] && cp "$NH_DIR/lead.$1" "$NH_DIR/lead" && return 0
        sleep 0.2
    done
    return 1
}

ports_of() {
    local p="" i
    for i in "$@"; do p+="${p:+,}$i=${NHC_PORT[i]}"; done
    echo "$p"
}
