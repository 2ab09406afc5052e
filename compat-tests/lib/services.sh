# services.sh: the stores of the S3 + etcd configuration for a test -- one
# etcd (Debian's etcd-server) and one S3-protocol server (s3rver, through
# lib/s3rver.js) on free loopback ports with fresh data directories.
# Source it, then:
#
#     nh_services_start     # status 0, or 77 when etcd or s3rver is missing
#     ... $NH_ETCD_ENDPOINT (http://127.0.0.1:PORT), $NH_S3_ENDPOINT,
#         $NH_ETCD_ENDPOINTS (every member's host:port, comma-separated),
#         $NH_S3_BUCKET, $NH_S3_DIR (s3rver's directory: an object KEY is the
#         file $NH_S3_DIR/$NH_S3_BUCKET/KEY._S3rver_object) ...
#     nh_services_stop      # SIGTERM, SIGKILL after 5 s; removes the directories
#
# etcd runs with its default limits (--max-txn-ops 128, 1.5 MiB requests, a
# 2 GiB quota); never on the well-known ports 2379/2380.  With
# NH_ETCD_MEMBERS=N (default 1) etcd is a cluster of N members, member I
# in $NH_SVC_DIR/etcdI with its pid in NH_ETCD_PIDS[I] and its client URL in
# NH_ETCD_URLS[I]; NH_ETCD_PID and NH_ETCD_ENDPOINT are member 0's.  Start-up waits at
# most 20 s for each to answer.  Their logs are in $NH_SVC_DIR/*.log; the
# directory is kept when NH_KEEP=1.  nh_services_stop is safe to call twice.

NH_SVC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NH_ETCD_BIN=${NH_ETCD_BIN:-etcd}
NH_SVC_DIR=
NH_ETCD_PID=
NH_S3_PID=
NH_ETCD_ENDPOINT=
NH_ETCD_ENDPOINTS=
NH_ETCD_MEMBERS=${NH_ETCD_MEMBERS:-1}
NH_ETCD_PIDS=()
NH_ETCD_URLS=()
NH_S3_ENDPOINT=
NH_S3_BUCKET=nh-test
NH_S3_DIR=

nh_svc_log() { echo "services: $*" >&2; }

# The services die with this shell, even when it is killed (PR_SET_PDEATHSIG
# through util-linux's setpriv, where it exists); start them from the test's
# own shell, not from a subshell.
NH_SVC_WRAP=()
! command -v setpriv >/dev/null || NH_SVC_WRAP=(setpriv --pdeathsig TERM)

# N distinct free loopback TCP ports, on one line.
nh_free_ports() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Wait until command "$2..." succeeds, at most $1 tenths of a second, while
# process $NH_WAIT_PID lives.  Status 0 when it answered.
nh_svc_wait() {
    local tenths=$1 i
    shift
    for ((i = 0; i < tenths; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$NH_WAIT_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

nh_etcd_member_healthy() {
    curl -fsS -m 1 "$1/health" | grep -q '"health":"true"'
}
nh_etcd_healthy() { nh_etcd_member_healthy "$NH_ETCD_ENDPOINT"; }

nh_etcd_start() {
    local try i n=$NH_ETCD_MEMBERS ports initial cport pport data sfx=()
    for try in 1 2 3; do
        read -r -a ports <<<"$(nh_free_ports $((2 * n)))"
        initial=
        NH_ETCD_URLS=()
        for ((i = 0; i < n; i++)); do
            # One member keeps the plain names (nh-test, etcd, etcd.log).
            sfx[i]=$i
            [ "$n" -gt 1 ] || sfx[i]=
            initial+="${initial:+,}nh-test${sfx[i]}=http://127.0.0.1:${ports[n + i]}"
            NH_ETCD_URLS[i]=http://127.0.0.1:${ports[i]}
        done
        NH_ETCD_PIDS=()
        for ((i = 0; i < n; i++)); do
            cport=${ports[i]}
            pport=${ports[n + i]}
            data=$NH_SVC_DIR/etcd${sfx[i]}
            rm -rf "$data"
            "${NH_SVC_WRAP[@]}" "$NH_ETCD_BIN" --name "nh-test${sfx[i]}" --data-dir "$data" \
                --listen-client-urls "${NH_ETCD_URLS[i]}" --advertise-client-urls "${NH_ETCD_URLS[i]}" \
                --listen-peer-urls "http://127.0.0.1:$pport" \
                --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
                --initial-cluster "$initial" \
                --initial-cluster-state new --initial-cluster-token "nh-test-$$-$try" \
                --logger zap --log-outputs "$NH_SVC_DIR/etcd${sfx[i]}.log" \
                >>"$NH_SVC_DIR/etcd${sfx[i]}.out" 2>&1 </dev/null &
            NH_ETCD_PIDS[i]=$!
        done
        NH_ETCD_PID=${NH_ETCD_PIDS[0]}
        NH_ETCD_ENDPOINT=${NH_ETCD_URLS[0]}
        NH_ETCD_ENDPOINTS=$(IFS=,; echo "${NH_ETCD_URLS[*]}")
        NH_ETCD_ENDPOINTS=${NH_ETCD_ENDPOINTS//http:\/\//}
        local up=1
        for ((i = 0; i < n; i++)); do
            NH_WAIT_PID=${NH_ETCD_PIDS[i]}
            nh_svc_wait 200 nh_etcd_member_healthy "${NH_ETCD_URLS[i]}" || { up=0; break; }
        done
        [ "$up" -eq 0 ] || return 0
        # A port taken between the choice and the bind: try others.
        for i in "${NH_ETCD_PIDS[@]}"; do kill -KILL "$i" 2>/dev/null; done
        for i in "${NH_ETCD_PIDS[@]}"; do wait "$i" 2>/dev/null; done
        NH_ETCD_PIDS=()
        NH_ETCD_PID=
    done
    nh_svc_log "etcd did not answer on $NH_ETCD_ENDPOINTS:"
    tail -5 "$NH_SVC_DIR"/etcd*.log "$NH_SVC_DIR"/etcd*.out >&2 2>/dev/null
    return 1
}

nh_s3_start() {
    NH_S3_DIR=$NH_SVC_DIR/s3
    mkdir -p "$NH_S3_DIR"
    # Port 0: s3rver binds a free port itself and says which.
    "${NH_SVC_WRAP[@]}" node "$NH_SVC_ROOT/compat-tests/lib/s3rver.js" 0 "$NH_S3_DIR" "$NH_S3_BUCKET" \
        >"$NH_SVC_DIR/s3rver.log" 2>&1 </dev/null &
    NH_S3_PID=$!
    NH_WAIT_PID=$NH_S3_PID
    if ! nh_svc_wait 200 grep -q '^s3rver listening' "$NH_SVC_DIR/s3rver.log"; then
        nh_svc_log "s3rver did not start:"
        tail -5 "$NH_SVC_DIR/s3rver.log" >&2
        return 1
    fi
    local port
    port=$(sed -n 's/^s3rver listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$NH_SVC_DIR/s3rver.log")
    NH_S3_ENDPOINT=http://127.0.0.1:$port
    nh_svc_wait 50 curl -fsS -m 1 -o /dev/null "$NH_S3_ENDPOINT/" || {
        nh_svc_log "s3rver does not answer on $NH_S3_ENDPOINT"
        return 1
    }
}

nh_services_start() {
    [ -z "$NH_SVC_DIR" ] || return 0 # already running
    if ! command -v "$NH_ETCD_BIN" >/dev/null; then
        nh_svc_log "no etcd ($NH_ETCD_BIN; Debian package etcd-server)"
        return 77
    fi
    if ! command -v node >/dev/null ||
        [ ! -d "$NH_SVC_ROOT/compat-tests/js/node_modules/s3rver" ]; then
        nh_svc_log "no s3rver (node, and npm ci in compat-tests/js)"
        return 77
    fi
    NH_SVC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nh-services.XXXXXX") || return 1
    if ! nh_etcd_start || ! nh_s3_start; then
        nh_services_stop
        return 1
    fi
    export NH_ETCD_ENDPOINT NH_ETCD_ENDPOINTS NH_S3_ENDPOINT NH_S3_BUCKET NH_S3_DIR NH_SVC_DIR
    return 0
}

# Stop one process: SIGTERM, SIGKILL after 5 s.
nh_svc_kill() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

nh_services_stop() {
    nh_svc_kill "$NH_S3_PID"
    local pid
    for pid in "${NH_ETCD_PIDS[@]}" $NH_ETCD_PID; do nh_svc_kill "$pid"; done
    NH_S3_PID=
    NH_ETCD_PID=
    NH_ETCD_PIDS=()
    if [ -n "$NH_SVC_DIR" ]; then
        if [ "${NH_KEEP:-0}" = 1 ]; then
            nh_svc_log "kept $NH_SVC_DIR"
        else
            rm -rf "$NH_SVC_DIR"
        fi
    fi
    NH_SVC_DIR=
}
