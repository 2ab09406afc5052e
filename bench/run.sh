#!/usr/bin/env bash
# bench/run.sh [nh-bench options]: start a fresh gateway (embedded default
# stores, data directory under /tmp, loopback, a free port), run nh-bench
# against it, stop it, and print a table.  Not a test: nothing is compared
# with a threshold.
#
# NH_BACKEND=s3 runs the gateway on S3 (s3rver) and etcd instead, and then
# measures, on the same servers in the same run, the raw pipeline of one
# PUT plus one etcd transaction per object (nh-pipeline) at the gateway's
# average object size and its flush.max.inflight parallelism (4).
#
# BUILD (default build) names the build directory; NUTHATCH, NH_BENCH and
# NUTHATCH_DUMP override the binaries; NH_KEEP=1 keeps the data directory.
# Options are passed to nh-bench (e.g. --records 50000 --seconds 5).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
NUTHATCH=${NUTHATCH:-$BUILD/nuthatch}
NH_BENCH=${NH_BENCH:-$BUILD/nh-bench}
NUTHATCH_DUMP=${NUTHATCH_DUMP:-$(dirname "$NUTHATCH")/nuthatch-dump}
NH_PIPELINE=${NH_PIPELINE:-$(dirname "$NUTHATCH")/nh-pipeline}
. "$ROOT/compat-tests/lib/nh_server.sh"

for b in "$NUTHATCH" "$NH_BENCH"; do
    if [ ! -x "$b" ]; then
        echo "bench: no executable at $b (make build; nh-bench needs librdkafka-dev)" >&2
        exit 1
    fi
done

NH_DIR=$(mktemp -d /tmp/nh-bench.XXXXXX) || exit 1

nh_start || exit 1
gw_pid=$NH_PID

if ! "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" --kv "$@" >"$NH_DIR/bench.out"; then
    echo "bench: nh-bench failed; gateway log:" >&2
    tail -20 "$NH_DIR/server.log" >&2
    exit 1
fi

# The gateway's CPU time and peak memory, before it stops.
tck=$(getconf CLK_TCK)
read -r utime stime < <(awk '{ print $14, $15 }' "/proc/$gw_pid/stat")
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$gw_pid/status")

# What the log holds: flush objects, their bytes, the batches in them.
objects=$(nh_object_files | wc -l)
obj_bytes=$(nh_object_files | xargs -r stat -c %s | awk '{ s += $1 } END { print s + 0 }')
batches=?
if [ -x "$NUTHATCH_DUMP" ] && [ "$NH_BACKEND" != s3 ]; then
    batches=$("$NUTHATCH_DUMP" --json "$NH_DIR/data" | grep -c '^{"type":"batch"')
fi

# The raw pipeline on the same S3 server and etcd, at the same object size
# and parallelism, while the gateway is idle.
pipeline=
if [ "$NH_BACKEND" = s3 ] && [ -x "$NH_PIPELINE" ] && [ "$objects" -gt 0 ]; then
    avg=$((obj_bytes / objects))
    n=$((objects < 200 ? objects : 200))
    pipeline=$(AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER "$NH_PIPELINE" \
        --s3 "$NH_S3_ENDPOINT" --bucket "$NH_S3_BUCKET" --etcd "$NH_ETCD_ENDPOINT" \
        --size "$avg" --parallel 4 --objects "$n")
    pipeline1=$(AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER "$NH_PIPELINE" \
        --s3 "$NH_S3_ENDPOINT" --bucket "$NH_S3_BUCKET" --etcd "$NH_ETCD_ENDPOINT" \
        --size "$avg" --parallel 1 --objects "$n")
fi
nh_stop
status=$?

kv() { sed -n "s/^$1=//p" "$NH_DIR/bench.out"; }
records=$(kv records)
size=$(kv value_bytes)
row() { printf '%-44s %s\n' "$1" "$2"; }

echo "Nuthatch benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), \
$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, \
/tmp on $(df -T /tmp | awk 'NR == 2 { print $2 " " $1 }')"
echo "gateway: $NUTHATCH, data in $NH_DIR/data, listening on $NH_BOOTSTRAP"
echo
row "measurement" "result"
row "-----------" "------"
if [ -n "$(kv produce_mb_s)" ]; then
    row "produce ${records} x ${size} B, acks=all" \
        "$(kv produce_mb_s) MB/s ($(kv produce_records_s) records/s, $(kv produce_seconds) s)"
fi
if [ -n "$(kv consume_mb_s)" ]; then
    row "consume them from the start" \
        "$(kv consume_mb_s) MB/s ($(kv consume_records_s) records/s, $(kv consume_seconds) s; \
first record after $(kv consume_first_ms) ms)"
fi
if [ -n "$(kv latency_p50_ms)" ]; then
    row "produce latency, acks=all, $(kv latency_rate)/s" \
        "p50 $(kv latency_p50_ms) ms, p90 $(kv latency_p90_ms) ms, p99 $(kv latency_p99_ms) ms, \
max $(kv latency_max_ms) ms (n=$(kv latency_count))"
fi
row "stored" "$objects objects, $((obj_bytes / 1000000)) MB, $batches batches"
if [ -n "$pipeline" ]; then
    pv() { echo "$pipeline" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
    row "raw pipeline: PUT + etcd txn per object" \
        "$(pv MB/s) MB/s, $(pv objects/s) objects/s at $(pv size) B x $(pv parallel) in flight; \
per object p50 $(pv p50_ms) ms, p99 $(pv p99_ms) ms"
    row "raw pipeline, one object at a time" \
        "per object p50 $(pipeline=$pipeline1 pv p50_ms) ms, p99 $(pipeline=$pipeline1 pv p99_ms) ms"
    if [ -n "$(kv produce_mb_s)" ]; then
        row "gateway produce / raw pipeline" \
            "$(awk -v a="$(kv produce_mb_s)" -v b="$(pv MB/s)" 'BEGIN { printf "%.2f", a / b }')"
    fi
fi
row "gateway CPU time, peak RSS" \
    "user $(awk -v t="$utime" -v h="$tck" 'BEGIN { printf "%.2f", t / h }') s, \
sys $(awk -v t="$stime" -v h="$tck" 'BEGIN { printf "%.2f", t / h }') s, $((hwm / 1024)) MiB"
if [ "$status" -ne 0 ]; then
    echo "bench: the gateway exited $status after SIGTERM" >&2
    exit 1
fi
