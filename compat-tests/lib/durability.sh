# durability.sh: acks=all producers that record every acknowledgement, the
# read-back check, and the faults of the S3 + etcd stores, for the tests
# that prove nothing acknowledged is lost (0010, 0014-0016).  Source it
# after nh_server.sh, then:
#
#     dur_init NAME           # $WORK, $CLIENT, $PORT, an EXIT trap; exits 77
#                             # without librdkafka
#     dur_start [--KEY VALUE]...   # nh_start on 127.0.0.1:$PORT (3 tries)
#     dur_produce N NPARTS TOPIC...  # N producers (nh_client.c produce) in
#                             # the background; acks in $WORK/acks.1..N
#     dur_acked               # records acknowledged so far
#     dur_wait_acked_over N [MS]   # until more than N are (default 30 s)
#     dur_stop_producers      # SIGTERM; each must exit 0 (nothing failed)
#     dur_check [--live] LABEL NPARTS TOPIC...   # read every partition back
#                             # and compare (lib/check_acks.py); --live
#                             # while the producers still run
#     fail MSG                # count a failure ($failures), go on
#
# Faults (NH_BACKEND=s3, after the first dur_start started the services):
#
#     svc_kill etcd|etcdI|s3  # SIGKILL, remembering the command line (etcdI:
#                             # member I of an NH_ETCD_MEMBERS cluster; etcd
#                             # is member 0)
#     svc_restart etcd|etcdI|s3   # the same command line: same ports, same data
#     svc_answers etcd|etcdI|s3   # status 0 when it answers (etcd: /health)
#     dur_recovery LABEL etcd|s3   # wait until it answers, then until the
#                             # acknowledgements grow: fails beyond
#                             # $DUR_RECOVERY_MS (5000) from the answer
#     rss_sample_start PID FILE / rss_sample_stop   # VmRSS (kB) every 0.5 s
#
# The producers pace themselves by NH_PRODUCE_RATE and NH_PRODUCE_VALUE_MAX
# (c/nh_client.c).  NH_KEEP=1 keeps $WORK.

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ms() { date +%s%3N; }

DUR_PIDS=()
DUR_SAMPLER=
DUR_RECOVERY_MS=${DUR_RECOVERY_MS:-5000}

dur_cleanup() {
    local p
    for p in "${DUR_PIDS[@]}" $DUR_SAMPLER; do kill -KILL "$p" 2>/dev/null; done
    # A service frozen by a test that stopped half-way must be able to stop.
    for p in ${NH_ETCD_PIDS[@]+"${NH_ETCD_PIDS[@]}"}; do kill -CONT "$p" 2>/dev/null; done
    [ -z "${NH_S3_PID:-}" ] || kill -CONT "$NH_S3_PID" 2>/dev/null
    nh_cleanup
    if [ -n "${WORK:-}" ]; then
        if [ "${NH_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
    fi
}

dur_init() {
    local name=$1
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/nh-$name.XXXXXX") || exit 1
    trap dur_cleanup EXIT
    # The librdkafka client: built by CMake next to nuthatch, else compiled here.
    CLIENT=${NH_COMPAT_CLIENT:-$(dirname "$NUTHATCH")/nh_compat_client}
    if [ ! -x "$CLIENT" ]; then
        if ! pkg-config --exists rdkafka 2>/dev/null; then
            echo "$name: librdkafka (pkg-config rdkafka) not installed: skipped"
            exit 77
        fi
        CLIENT=$WORK/nh_compat_client
        # shellcheck disable=SC2046
        cc -O2 -o "$CLIENT" "$NH_ROOT/compat-tests/c/nh_client.c" $(pkg-config --cflags --libs rdkafka) ||
            exit 1
    fi
    # A fixed port below the ephemeral range: a restart must come back where
    # the producers look for it, and no client's own connection can take it.
    PORT=$(/usr/bin/python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass
    finally:
        s.close()
EOF
)
    [ -n "$PORT" ] || { echo "no free port"; exit 1; }
}

dur_start() {
    local i
    for i in 1 2 3; do
        nh_start --listeners "PLAINTEXT://127.0.0.1:$PORT" "$@" && return 0
        sleep 1
    done
    return 1
}

dur_produce() {
    local n=$1 nparts=$2 i topic_list
    shift 2
    topic_list=$(IFS=,; echo "$*")
    for i in $(seq 1 "$n"); do
        "$CLIENT" produce "$NH_BOOTSTRAP" "$WORK/acks.$i" "$i" "$nparts" "$topic_list" \
            2>"$WORK/producer.$i.err" &
        DUR_PIDS+=($!)
    done
}

dur_acked() { cat "$WORK"/acks.* 2>/dev/null | wc -l; }

# Bytes of acknowledgements so far: cheaper than counting lines, and grows
# exactly when they do.
dur_ack_bytes() { cat "$WORK"/acks.* 2>/dev/null | wc -c; }

dur_wait_acked_over() {
    local deadline=$(($(ms) + ${2:-30000}))
    while [ "$(dur_acked)" -le "$1" ]; do
        [ "$(ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# Stop the producers: they wait for what is outstanding, then exit; status 0
# means every record they produced was acknowledged.
dur_stop_producers() {
    local p i=0
    for p in "${DUR_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${DUR_PIDS[@]}"; do
        i=$((i + 1))
        wait "$p" || fail "producer $i: $(tail -3 "$WORK/producer.$i.err")"
    done
    DUR_PIDS=()
    grep -h 'acknowledged' "$WORK"/producer.*.err
}

dur_check() {
    local live=
    if [ "$1" = --live ]; then
        live=1
        shift
    fi
    local label=$1 nparts=$2
    shift 2
    local dump=$WORK/dump.$label acks=("$WORK"/acks.*) args=()
    if [ -n "$live" ]; then
        # Copies taken before the read-back: every acknowledgement in them is
        # below the high watermarks the dump then reads up to.
        local f
        acks=()
        for f in "$WORK"/acks.*; do
            cp "$f" "$WORK/snap.$label.${f##*.}"
            acks+=("$WORK/snap.$label.${f##*.}")
        done
        args=(--partial-ok)
    fi
    if ! timeout 180 "$CLIENT" dump "$NH_BOOTSTRAP" "$dump" "$nparts" "$@" \
        2>"$WORK/dump.$label.err"; then
        fail "$label: reading back failed: $(tail -5 "$WORK/dump.$label.err")"
        return
    fi
    /usr/bin/python3 "$NH_ROOT/compat-tests/lib/check_acks.py" "${args[@]}" "$label" "$dump" \
        "${acks[@]}" || fail "$label: verification"
    [ "${NH_KEEP:-0}" = 1 ] || rm -f "$dump" "$WORK"/snap.*
}

# ------------------------------------------------------------------ faults

# The command lines of the services as they were started, for restarts:
# etcd member I's in DUR_ETCD_CMD_I (a NUL-separated string per member).
DUR_ETCD_CMD=()
DUR_S3_CMD=()

# A service: "etcd" (member 0), "etcdI" (member I of NH_ETCD_MEMBERS) or "s3".
svc_member() {
    case $1 in
    etcd) echo 0 ;;
    etcd[0-9]*) echo "${1#etcd}" ;;
    *) echo -1 ;;
    esac
}

svc_pid() {
    local m
    m=$(svc_member "$1")
    case $1 in
    etcd*) echo "${NH_ETCD_PIDS[$m]:-}" ;;
    s3) echo "${NH_S3_PID:-}" ;;
    esac
}

svc_set_pid() {
    local m
    m=$(svc_member "$1")
    case $1 in
    etcd*)
        NH_ETCD_PIDS[m]=$2
        [ "$m" -ne 0 ] || NH_ETCD_PID=$2
        ;;
    s3) NH_S3_PID=$2 ;;
    esac
}

svc_kill() {
    local pid
    pid=$(svc_pid "$1")
    [ -n "$pid" ] || { fail "svc_kill $1: not running"; return 1; }
    local cmd=()
    mapfile -d '' -t cmd <"/proc/$pid/cmdline"
    case $1 in
    etcd*) eval "DUR_ETCD_CMD_$(svc_member "$1")=(\"\${cmd[@]}\")" ;;
    s3)
        # lib/s3rver.js PORT DIR BUCKET, started on port 0: the port it took.
        local port=${NH_S3_ENDPOINT##*:} i
        for i in "${!cmd[@]}"; do
            case ${cmd[$i]} in */s3rver.js) cmd[i + 1]=$port ;; esac
        done
        DUR_S3_CMD=("${cmd[@]}")
        ;;
    esac
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    svc_set_pid "$1" ""
}

# From the test's own shell, like services.sh: the service dies with it.
svc_restart() {
    local wrap=(${NH_SVC_WRAP[@]+"${NH_SVC_WRAP[@]}"}) m
    case $1 in
    etcd*)
        m=$(svc_member "$1")
        eval "DUR_ETCD_CMD=(\"\${DUR_ETCD_CMD_$m[@]}\")"
        local sfx=$m
        [ "${NH_ETCD_MEMBERS:-1}" -gt 1 ] || sfx=
        "${wrap[@]}" "${DUR_ETCD_CMD[@]}" >>"$NH_SVC_DIR/etcd$sfx.out" 2>&1 </dev/null &
        ;;
    s3)
        "${wrap[@]}" "${DUR_S3_CMD[@]}" >>"$NH_SVC_DIR/s3rver.log" 2>&1 </dev/null &
        ;;
    esac
    svc_set_pid "$1" $!
}

svc_answers() {
    case $1 in
    etcd*) nh_etcd_member_healthy "${NH_ETCD_URLS[$(svc_member "$1")]}" 2>/dev/null ;;
    s3) curl -fsS -m 1 -o /dev/null "$NH_S3_ENDPOINT/" 2>/dev/null ;;
    esac
}

# dur_recovery LABEL etcd|s3 [SINCE]: once the service answers (within
# 30 s), the time until the acknowledgements grow; prints it (and how long
# the service took to answer after SINCE, a time in ms, when given), and
# fails beyond $DUR_RECOVERY_MS or when they do not grow within 30 s.  Sets
# DUR_RECOVERED_MS (-1: never) and DUR_ANSWERED_AT (ms; 0: never).
dur_recovery() {
    local label=$1 svc=$2 since=${3:-} t0 t1 b0 deadline
    DUR_RECOVERED_MS=-1
    DUR_ANSWERED_AT=0
    deadline=$(($(ms) + 30000))
    until svc_answers "$svc"; do
        if [ "$(ms)" -ge "$deadline" ]; then
            fail "$label: $svc does not answer within 30 s"
            return 1
        fi
        sleep 0.05
    done
    t0=$(ms)
    DUR_ANSWERED_AT=$t0
    b0=$(dur_ack_bytes)
    [ -z "$since" ] || echo "$label: $svc answers again after $((t0 - since)) ms"
    deadline=$((t0 + 30000))
    while [ "$(dur_ack_bytes)" -le "$b0" ]; do
        if [ "$(ms)" -ge "$deadline" ]; then
            fail "$label: no acknowledgement within 30 s of $svc answering again"
            return 1
        fi
        sleep 0.05
    done
    t1=$(ms)
    DUR_RECOVERED_MS=$((t1 - t0))
    echo "$label: acknowledgements resumed $DUR_RECOVERED_MS ms after $svc answered again"
    [ "$DUR_RECOVERED_MS" -le "$DUR_RECOVERY_MS" ] ||
        fail "$label: acknowledgements resumed $DUR_RECOVERED_MS ms after $svc answered (limit $DUR_RECOVERY_MS ms)"
}

rss_sample_start() {
    local pid=$1 file=$2
    (
        while kill -0 "$pid" 2>/dev/null; do
            echo "$(date +%s%3N) $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
            sleep 0.5
        done
    ) >"$file" &
    DUR_SAMPLER=$!
}

rss_sample_stop() {
    [ -n "$DUR_SAMPLER" ] || return 0
    kill -TERM "$DUR_SAMPLER" 2>/dev/null
    wait "$DUR_SAMPLER" 2>/dev/null
    DUR_SAMPLER=
}
