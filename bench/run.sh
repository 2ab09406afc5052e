#!/usr/bin/env bash
# bench/run.sh: the side-by-side benchmark of docs/performance.md (`make bench`).
# Not a test: nothing is compared with a threshold; ratios are reported.
#
# One run measures, on this machine, one after the other:
#   mock      librdkafka's in-process mock cluster (nh-bench --mock): the
#             protocol path with no durability, the upper baseline;
#   embedded  a fresh gateway on its defaults (directory object store, SQLite);
#   s3        a fresh gateway on s3rver + etcd on loopback (compat-tests/lib/
#             services.sh), skipped when they are not installed;
#   raw       the backends' own limits at the gateway's object sizes and
#             parallelism (nh-pipeline): write + fdatasync + rename + directory
#             fsync, then one SQLite transaction, per object for the directory;
#             one signed PUT + one etcd transaction per object for S3 + etcd;
#             ranged reads of the same objects.
# For the gateways: produce and tail-consume throughput on 1, 16 and 1,000
# partitions; produce latency at a light rate and at half the 1-partition
# produce rate; a restart, then catch-up consumption of the same topics (cold
# caches); RSS with 10,000 partitions idle and active; objects stored per MB;
# CPU seconds of every process per phase.  The result is a Markdown section
# on stdout; with --docs it also replaces the results section of
# docs/performance.md (between the bench:begin/bench:end markers).
#
# Sizes (environment): NH_BENCH_RECORDS (200000 records of NH_BENCH_SIZE=1024
# bytes per throughput run), NH_BENCH_PARTITIONS ("1 16 1000"),
# NH_BENCH_RATE (200 records/s, the light rate), NH_BENCH_SECONDS (10 s per
# latency run), NH_BENCH_LATENCY_WARMUP_SECONDS (10: as long a light load,
# untimed and not counted, right before the light run; 0 = none),
# NH_BENCH_RSS_PARTITIONS (10000), NH_BENCH_SYSTEMS ("mock embedded s3"),
# NH_BENCH_WARMUP_RECORDS (NH_BENCH_RECORDS: produced and read back untimed
# first, by each mock run and once by each fresh gateway; 0 = none).  BUILD
# names the build directory; NH_KEEP=1 keeps the data directories.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export NUTHATCH=${NUTHATCH:-$BUILD/nuthatch}
NH_BENCH=${NH_BENCH:-$BUILD/nh-bench}
NH_PIPELINE=${NH_PIPELINE:-$BUILD/nh-pipeline}
RECORDS=${NH_BENCH_RECORDS:-200000}
SIZE=${NH_BENCH_SIZE:-1024}
PARTS=${NH_BENCH_PARTITIONS:-1 16 1000}
RATE=${NH_BENCH_RATE:-200}
SECONDS_LAT=${NH_BENCH_SECONDS:-10}
LAT_WARM=${NH_BENCH_LATENCY_WARMUP_SECONDS:-10}
RSS_PARTS=${NH_BENCH_RSS_PARTITIONS:-10000}
WARM=${NH_BENCH_WARMUP_RECORDS:-$RECORDS}
SYSTEMS=${NH_BENCH_SYSTEMS:-mock embedded s3}
COMMON=(--records "$RECORDS" --size "$SIZE" --rate "$RATE" --seconds "$SECONDS_LAT" --kv)

for b in "$NUTHATCH" "$NH_BENCH" "$NH_PIPELINE"; do
    if [ ! -x "$b" ]; then
        echo "bench: no executable at $b (make build; nh-bench needs librdkafka-dev)" >&2
        exit 1
    fi
done

log() { echo "bench: $*" >&2; }
# kv FILE KEY: the value of KEY in FILE (KEY=VALUE lines), or empty.
kv() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | tail -1; }
# half_rate DIR SYSTEM: half of SYSTEM's 1-partition produce rate (records/s),
# or of its first partition count's when NH_BENCH_PARTITIONS leaves 1 out.
half_rate() {
    local f=$1/$2-p1.kv
    [ -f "$f" ] || f=$1/$2-p${PARTS%% *}.kv
    awk -v r="$(kv "$f" produce_records_s)" 'BEGIN { printf "%d", r / 2 }'
}

# ---------------------------------------------------------------- one gateway
# run.sh --one OUT: the gateway part for $NH_BACKEND, results into OUT/$NH_BACKEND-*.
if [ "${1:-}" = --one ]; then
    OUT=$2
    B=$NH_BACKEND
    . "$ROOT/compat-tests/lib/nh_server.sh"
    MPORT=
    start() {
        nh_start --metrics.listen 127.0.0.1:0 || exit 1
        local i
        for i in $(seq 1 50); do
            MPORT=$(sed -n 's|.*serving /metrics, /healthz and /readyz on 127\.0\.0\.1:\([0-9]*\).*|\1|p' \
                "$NH_DIR/server.log" | head -1)
            [ -z "$MPORT" ] || return 0
            sleep 0.1
        done
        log "$B: the gateway does not say where it serves /metrics"
        exit 1
    }
    # metric NAME: the value of one counter of /metrics (0 when absent).
    metric() {
        curl -fsS -m 5 "http://127.0.0.1:$MPORT/metrics" |
            awk -v k="$1" '$1 == k { v = $2 } END { printf "%.0f", v + 0 }'
    }
    counters() {
        echo "$(metric 'nuthatch_object_requests_total{op="put"}') $(metric nuthatch_flushes_total)" \
            "$(metric nuthatch_object_written_bytes_total) $(metric nuthatch_segments_written_total)" \
            "$(metric nuthatch_object_read_bytes_total)"
    }
    # stored FILE BEFORE: the object PUTs, flushes, object bytes written,
    # segments written by merges and object bytes read since BEFORE, into FILE.
    stored() {
        local a b
        read -r -a a <<<"$2"
        read -r -a b <<<"$(counters)"
        echo "objects=$((b[0] - a[0]))" >>"$1"
        echo "flushes=$((b[1] - a[1]))" >>"$1"
        echo "object_bytes=$((b[2] - a[2]))" >>"$1"
        echo "segments=$((b[3] - a[3]))" >>"$1"
        echo "object_read_bytes=$((b[4] - a[4]))" >>"$1"
    }
    rss_now() { awk '/^VmRSS:/ { print $2 }' "/proc/$NH_PID/status"; }
    # hists: sum and count of the gateway's latency histograms (object PUT,
    # metadata commit, flush, Produce request, event-loop lag), one "sum
    # count" pair each, then the loop-lag ticks at most 5 ms late.
    hists() {
        curl -fsS -m 5 "http://127.0.0.1:$MPORT/metrics" | awk '
            $1 == "nuthatch_object_request_duration_seconds_sum{op=\"put\"}" { v[1] = $2 }
            $1 == "nuthatch_object_request_duration_seconds_count{op=\"put\"}" { c[1] = $2 }
            $1 == "nuthatch_metadata_commit_duration_seconds_sum" { v[2] = $2 }
            $1 == "nuthatch_metadata_commit_duration_seconds_count" { c[2] = $2 }
            $1 == "nuthatch_flush_duration_seconds_sum" { v[3] = $2 }
            $1 == "nuthatch_flush_duration_seconds_count" { c[3] = $2 }
            $1 == "nuthatch_request_duration_seconds_sum{api=\"Produce\"}" { v[4] = $2 }
            $1 == "nuthatch_request_duration_seconds_count{api=\"Produce\"}" { c[4] = $2 }
            $1 == "nuthatch_event_loop_lag_seconds_sum" { v[5] = $2 }
            $1 == "nuthatch_event_loop_lag_seconds_count" { c[5] = $2 }
            $1 == "nuthatch_event_loop_lag_seconds_bucket{le=\"0.005\"}" { le5 = $2 }
            $1 == "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"}" { p5 = $2 }
            $1 == "nuthatch_request_duration_seconds_bucket{api=\"Produce\",le=\"0.01\"}" { p10 = $2 }
            END { for (i = 1; i <= 5; i++) printf "%s %s ", v[i] + 0, c[i] + 0
                printf "%s %s %s", le5 + 0, p5 + 0, p10 + 0 }'
    }
    # hist_avgs FILE BEFORE: the average (ms) of each histogram since BEFORE, into FILE.
    hist_avgs() {
        awk -v a="$2" -v b="$(hists)" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
            split("put commit flush produce looplag", name, " ")
            for (i = 1; i <= 5; i++) { dc = y[2 * i] - x[2 * i]
                if (dc > 0) printf "avg_%s_ms=%.3f\n", name[i], (y[2 * i - 1] - x[2 * i - 1]) * 1000 / dc }
            if (dc > 0) printf "looplag_over5_pct=%.1f\n", 100 * (dc - (y[11] - x[11])) / dc
            dp = y[8] - x[8]
            if (dp > 0) printf "produce_over5_pct=%.1f\nproduce_over10_pct=%.1f\n",
                100 * (dp - (y[12] - x[12])) / dp, 100 * (dp - (y[13] - x[13])) / dp }' >>"$1"
    }
    # A profile of the gateway while a phase runs (perf record of the
    # cpu-clock event, no call graphs), when perf works here: prof_start
    # NAME, then prof_stop writes the top symbols and the share of each
    # thread to OUT/B-prof-NAME.txt.
    PERF_PID='' PERF_NAME=''
    prof_start() {
        PERF_NAME=$1 PERF_PID=''
        command -v perf >/dev/null || return 0
        perf record -q -e cpu-clock -F 499 -o "$NH_DIR/perf.data" -p "$NH_PID" \
            >/dev/null 2>"$NH_DIR/perf.err" &
        PERF_PID=$!
        sleep 0.5
    }
    prof_stop() {
        [ -n "$PERF_PID" ] || return 0
        kill -INT "$PERF_PID" 2>/dev/null
        wait "$PERF_PID" 2>/dev/null
        local f=$OUT/$B-prof-$PERF_NAME.txt
        perf report -i "$NH_DIR/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ { printf "thread %s %s\n", $2, $1 }' >"$f"
        perf report -i "$NH_DIR/perf.data" --stdio --no-children --sort comm,dso,sym -g none \
            2>/dev/null | awk '/^ +[0-9.]+%/ && n < 12 { n++; s = $5; for (i = 6; i <= NF; i++) s = s " " $i
                printf "sym %s %s %s %s\n", $1, $2, ($4 == "[k]" ? "kernel" : $3), s }' >>"$f"
        perf report -i "$NH_DIR/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ { printf "dso %s %s\n", $2, $1 }' >>"$f"
        rm -f "$NH_DIR/perf.data" "$NH_DIR/perf.data.old"
    }
    start
    watch() {
        local w=(--watch "gateway=$NH_PID")
        if [ "$B" = s3 ]; then
            w+=(--watch "s3rver=$NH_S3_PID" --watch "etcd=$NH_ETCD_PID")
        fi
        echo "${w[@]}"
    }
    fail() {
        log "$B: $1 failed; gateway log:"
        tail -20 "$NH_DIR/server.log" >&2
        exit 1
    }
    # A warm-up first, untimed and before the counters are read: the mock
    # cluster gets the same inside each of its runs (--warmup-records).
    if [ "$WARM" -gt 0 ]; then
        log "$B: warm-up, $WARM records on ${PARTS%% *} partitions"
        "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --partitions "${PARTS%% *}" \
            --records "$WARM" --topic bench-warmup --phases produce,consume >/dev/null ||
            fail "nh-bench (warm-up)"
    fi
    # Throughput and the tail, per partition count; objects counted around
    # each.  Every run is profiled (sampling at 499 Hz costs the gateway
    # about 1%).
    for p in $PARTS; do
        f=$OUT/$B-p$p.kv
        c0=$(counters)
        log "$B: produce + consume, $p partitions"
        prof_start "p$p"
        # shellcheck disable=SC2046
        "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --partitions "$p" \
            --topic "bench-p$p" --phases produce,consume $(watch) >"$f" || fail "nh-bench ($p)"
        stored "$f" "$c0"
        prof_stop
    done
    half=$(half_rate "$OUT" "$B")
    # The latency runs measure a light load: first the lifecycle folds what
    # the throughput runs left (at 1,000 partitions, over 100,000 index
    # keys), at most 120 s.
    settle=$(date +%s)
    while [ "$(metric nuthatch_manifests_unfolded)" != 0 ] && [ $(($(date +%s) - settle)) -lt 120 ]; do
        sleep 1
    done
    echo "settle_s=$(($(date +%s) - settle))" >"$OUT/$B-settle.kv"
    log "$B: lifecycle settled after $(($(date +%s) - settle)) s"
    for ph in latency half; do
        f=$OUT/$B-$ph.kv
        if [ "$ph" = latency ] && [ "$LAT_WARM" -gt 0 ]; then
            # The same light load first, untimed: the light run measures a
            # steady light load, not its start (s3rver answers its first
            # thousands of small PUTs slower than the next ones).
            log "$B: light latency warm-up, $LAT_WARM s"
            "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --phases latency \
                --seconds "$LAT_WARM" >"$OUT/$B-latwarm.kv" || fail "nh-bench (warm-up)"
        fi
        c0=$(counters) h0=$(hists)
        log "$B: $ph latency"
        prof_start "$ph"
        # shellcheck disable=SC2046
        "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --phases "$ph" \
            --half-rate "$half" $(watch) >"$f" || fail "nh-bench ($ph)"
        prof_stop
        stored "$f" "$c0"
        hist_avgs "$f" "$h0"
    done
    # A restart: caches cold, the topics read back from the object store.
    nh_stop || fail "stop"
    start
    for p in $PARTS; do
        log "$B: catch-up after a restart, $p partitions"
        # shellcheck disable=SC2046
        "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --partitions "$p" \
            --topic "bench-p$p" --phases catchup $(watch) >"$OUT/$B-cu$p.kv" || fail "catch-up ($p)"
    done
    # RSS on a gateway restarted again (no cache filled by the runs above),
    # and once more after a restart with the many partitions in the log.
    nh_stop || fail "stop"
    start
    log "$B: RSS with $RSS_PARTS partitions"
    # shellcheck disable=SC2046
    "$NH_BENCH" --bootstrap "$NH_BOOTSTRAP" "${COMMON[@]}" --phases rss \
        --rss-partitions "$RSS_PARTS" $(watch) >"$OUT/$B-rss.kv" || fail "rss"
    nh_stop || fail "stop"
    start
    sleep 3
    echo "rss_restarted_kib=$(rss_now)" >>"$OUT/$B-rss.kv"
    nh_stop || fail "stop"
    # The backend's raw limit, on the same store, at the gateway's object
    # sizes: throughput with the gateway's parallelism, and one object at a
    # time at the latency run's size.
    if [ "$B" = s3 ]; then
        raw=(--s3 "$NH_S3_ENDPOINT" --bucket "$NH_S3_BUCKET" --etcd "$NH_ETCD_ENDPOINT"
            --watch "s3rver=$NH_S3_PID" --watch "etcd=$NH_ETCD_PID")
        par=4 # flush.max.inflight
    else
        mkdir -p "$NH_DIR/raw"
        raw=(--dir "$NH_DIR/raw" --sqlite "$NH_DIR/raw/meta.db")
        par=2 # the directory store's writer threads
    fi
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    for p in $PARTS; do
        f=$OUT/$B-p$p.kv
        n=$(kv "$f" objects)
        [ "${n:-0}" -gt 0 ] || continue
        avg=$(($(kv "$f" object_bytes) / n))
        [ "$n" -ge 8 ] || n=8
        [ "$n" -le 50 ] || n=50
        log "$B: raw pipeline, $n objects of $avg bytes, $par in flight"
        "$NH_PIPELINE" "${raw[@]}" --size "$avg" --parallel "$par" --objects "$n" \
            --get-range 1048576 >"$OUT/$B-raw$p.txt" || fail "nh-pipeline"
    done
    f=$OUT/$B-latency.kv
    n=$(kv "$f" objects)
    avg=$((${n:-0} > 0 ? $(kv "$f" object_bytes) / n : 1100))
    log "$B: raw pipeline, one object of $avg bytes at a time"
    "$NH_PIPELINE" "${raw[@]}" --size "$avg" --parallel 1 --objects 500 >"$OUT/$B-rawone.txt" ||
        fail "nh-pipeline"
    f=$OUT/$B-half.kv
    n=$(kv "$f" objects)
    if [ "${n:-0}" -gt 0 ]; then
        avg=$(($(kv "$f" object_bytes) / n))
        log "$B: raw pipeline, one object of $avg bytes (the half-rate run's) at a time"
        "$NH_PIPELINE" "${raw[@]}" --size "$avg" --parallel 1 --objects 300 >"$OUT/$B-rawhalf.txt" ||
            fail "nh-pipeline"
    fi
    exit 0
fi

# ---------------------------------------------------------------- all of it
DOCS=0
[ "${1:-}" != --docs ] || DOCS=1
OUT=$(mktemp -d /tmp/nh-bench.XXXXXX) || exit 1
trap '[ "${NH_KEEP:-0}" = 1 ] || rm -rf "$OUT"' EXIT
start=$(date +%s)
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
for s in $SYSTEMS; do
    case $s in
    mock)
        for p in $PARTS; do
            log "mock: produce + consume, $p partitions"
            "$NH_BENCH" --mock "${COMMON[@]}" --partitions "$p" --phases produce,consume \
                --warmup-records "$WARM" >"$OUT/mock-p$p.kv" 2>/dev/null || exit 1
        done
        half=$(half_rate "$OUT" mock)
        for ph in latency half; do
            log "mock: $ph latency"
            w=20 # nh-bench's default: records of the run not counted
            [ "$ph" != latency ] || w=$((RATE * LAT_WARM > 20 ? RATE * LAT_WARM : 20))
            "$NH_BENCH" --mock "${COMMON[@]}" --phases "$ph" --half-rate "$half" --warmup "$w" \
                >"$OUT/mock-$ph.kv" 2>/dev/null || exit 1
        done
        ;;
    embedded | s3)
        NH_BACKEND=$s bash "$0" --one "$OUT"
        rc=$?
        if [ "$rc" -eq 77 ]; then
            log "$s: etcd or s3rver not installed: skipped"
        elif [ "$rc" -ne 0 ]; then
            exit 1
        fi
        ;;
    *)
        log "unknown system $s"
        exit 1
        ;;
    esac
done
elapsed=$(($(date +%s) - start))

# ---------------------------------------------------------------- the table
# pv FILE LINE KEY: a value of nh-pipeline's output line LINE (pipeline|get).
pv() { [ -f "$1" ] && awk -v l="$2" -v k="$3" '$1 == l { for (i = 2; i <= NF; i++) {
    split($i, a, "="); if (a[1] == k) print a[2] } }' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "";
    else printf "%.2f", a / b }'; }
# cpu_gb FILE PHASE PROC: CPU seconds of PROC per GB in PHASE.
cpu_gb() {
    local s mb
    s=$(kv "$1" "$2_cpu_$3_s") mb=$(kv "$1" "$2_mb")
    awk -v s="$s" -v m="$mb" 'BEGIN { if (s == "" || m == "" || m + 0 == 0) print "";
        else printf "%.2f", s / (m / 1000) }'
}
# per_s FILE KEY: KEY (bytes over a latency run) in MB per second of the run.
per_s() {
    awk -v b="$(kv "$1" "$2")" -v s="$SECONDS_LAT" 'BEGIN { if (b == "" || s + 0 == 0) print "";
        else printf "%.1f", b / 1e6 / s }'
}
row() {
    local IFS='|'
    echo "| $* |"
}
O=$OUT
{
    echo "Run of $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)," \
        "${elapsed} s; load average before/after: ${LOAD0:-$(cut -d' ' -f1-3 /proc/loadavg)}" \
        "/ $(cut -d' ' -f1-3 /proc/loadavg). $RECORDS records of $SIZE bytes per throughput run," \
        "acks=all; latency runs of $SECONDS_LAT s on one partition."
    echo
    echo "Throughput (MB/s of record values) and ratios.  raw dir: write (O_DIRECT from 256 KiB, as"
    echo "the directory store) + fdatasync + rename + directory fsync, then one SQLite transaction"
    echo "(WAL, synchronous=FULL), per object of the embedded gateway's average size, 2 in flight; raw S3:"
    echo "one PUT + one etcd transaction per object of the S3 gateway's average size, 4 in flight;"
    echo "the get rows read those objects back in 1 MiB ranges."
    echo
    row " measurement " " mock " " embedded " " S3 + etcd " " raw dir " " raw S3 + etcd " \
        " embedded / mock " " embedded / raw dir " " S3 / raw S3 "
    row "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
    for p in $PARTS; do
        m=$(kv "$O/mock-p$p.kv" produce_mb_s) e=$(kv "$O/embedded-p$p.kv" produce_mb_s)
        s=$(kv "$O/s3-p$p.kv" produce_mb_s)
        rd=$(pv "$O/embedded-raw$p.txt" pipeline MB/s) rs=$(pv "$O/s3-raw$p.txt" pipeline MB/s)
        row " produce, $p partitions " " $m " " $e " " $s " " $rd " " $rs " " $(ratio "$e" "$m") " \
            " $(ratio "$e" "$rd") " " $(ratio "$s" "$rs") "
    done
    for p in $PARTS; do
        m=$(kv "$O/mock-p$p.kv" consume_mb_s) e=$(kv "$O/embedded-p$p.kv" consume_mb_s)
        s=$(kv "$O/s3-p$p.kv" consume_mb_s)
        row " consume at the tail, $p partitions " " $m " " $e " " $s " " " " " \
            " $(ratio "$e" "$m") " " " " "
    done
    for p in $PARTS; do
        m=$(kv "$O/mock-p$p.kv" consume_mb_s) e=$(kv "$O/embedded-cu$p.kv" catchup_mb_s)
        s=$(kv "$O/s3-cu$p.kv" catchup_mb_s)
        rd=$(pv "$O/embedded-raw$p.txt" get MB/s) rs=$(pv "$O/s3-raw$p.txt" get MB/s)
        row " catch-up after a restart, $p partitions " " " " $e " " $s " " $rd " " $rs " \
            " $(ratio "$e" "$m") " " $(ratio "$e" "$rd") " " $(ratio "$s" "$rs") "
    done
    echo
    echo "Produce latency (ms, from produce() to the delivery report; acks=all, linger.ms=0, one"
    echo "partition).  light: $RATE records/s.  half: half of the same system's 1-partition produce"
    echo "rate: mock $(kv "$O/mock-half.kv" half_rate)/s, embedded $(kv "$O/embedded-half.kv" half_rate)/s," \
        "S3 + etcd $(kv "$O/s3-half.kv" half_rate)/s.  raw, one at a time: one object of the light"
    echo "(half) run's average object size, written and committed before the next -- the durable"
    echo "write every flush of that run needs, with nothing queued before it (raw dir: the object,"
    echo "then a SQLite transaction, as the embedded gateway commits).  half p99 from the second"
    echo "second on: the same run's records due after its first second (a new producer's first"
    echo "second at these rates is the client warming up, with the mock cluster as much)."
    echo
    row " measurement " " mock " " embedded " " S3 + etcd " " raw dir " " raw S3 + etcd "
    row "---" "---:" "---:" "---:" "---:" "---:"
    for ph in latency half; do
        name=light
        [ "$ph" = latency ] || name=half
        for q in p50 p99 p999; do
            label=$q
            [ "$q" != p999 ] || label=p99.9
            rd= rs=
            if [ "$ph" = latency ]; then
                rd=$(pv "$O/embedded-rawone.txt" pipeline "${q}_ms") rs=$(pv "$O/s3-rawone.txt" pipeline "${q}_ms")
            else
                rd=$(pv "$O/embedded-rawhalf.txt" pipeline "${q}_ms") rs=$(pv "$O/s3-rawhalf.txt" pipeline "${q}_ms")
            fi
            row " $name $label " " $(kv "$O/mock-$ph.kv" "${ph}_${q}_ms") " \
                " $(kv "$O/embedded-$ph.kv" "${ph}_${q}_ms") " " $(kv "$O/s3-$ph.kv" "${ph}_${q}_ms") " \
                " $rd " " $rs "
        done
    done
    row " half p99 from the second second on " " $(kv "$O/mock-half.kv" half_p99_after1s_ms) " \
        " $(kv "$O/embedded-half.kv" half_p99_after1s_ms) " " $(kv "$O/s3-half.kv" half_p99_after1s_ms) " " " " "
    echo
    echo "Object PUTs and flushes (the gateway's /metrics counters) per MB of record values written;"
    echo "RSS of the gateway (VmRSS, KiB) restarted with no cache filled, then with a topic of"
    echo "$RSS_PARTS partitions created (idle), after $((RSS_PARTS * 5)) records spread over all of them"
    echo "(active), and restarted with that topic in the log."
    echo
    row " measurement " " embedded " " S3 + etcd "
    row "---" "---:" "---:"
    for f in p${PARTS// / p} latency half; do
        vals=()
        for b in embedded s3; do
            vals+=("$(awk -v o="$(kv "$O/$b-$f.kv" objects)" -v fl="$(kv "$O/$b-$f.kv" flushes)" \
                -v ob="$(kv "$O/$b-$f.kv" object_bytes)" \
                -v m="$(kv "$O/$b-$f.kv" produce_mb)$(kv "$O/$b-$f.kv" latency_count)$(kv "$O/$b-$f.kv" half_count)" \
                -v lat="$(kv "$O/$b-$f.kv" latency_count)$(kv "$O/$b-$f.kv" half_count)" -v sz="$SIZE" \
                'BEGIN { if (o == "" || m == "") { print ""; exit }
                    if (lat != "") m = lat * sz / 1e6
                    printf "%.3f PUTs/MB; %d PUTs, %d flushes, %.0f KB per object", o / m, o, fl,
                        o ? ob / o / 1000 : 0 }')")
        done
        label="throughput run, ${f#p} partitions"
        [ "${f#p}" != "$f" ] || label="$f latency run"
        [ "$f" != latency ] || label="light latency run"
        [ "$f" != half ] || label="half-rate latency run"
        row " $label " " ${vals[0]} " " ${vals[1]} "
    done
    for k in before_kib idle_kib active_kib restarted_kib idle_per_partition_b active_per_partition_b; do
        row " RSS $k " " $(kv "$O/embedded-rss.kv" "rss_$k") " " $(kv "$O/s3-rss.kv" "rss_$k") "
    done
    echo
    echo "The targets of issue 8, from this run:"
    echo
    row " target " " value " " met "
    row "---" "---:" "---"
    target() { # NAME VALUE CONDITION(awk, on v)
        local met
        met=$(awk -v v="$2" "BEGIN { if (v == \"\") print \"not measured\"; else if ($3) print \"yes\"; else print \"no\" }")
        row " $1 " " $2 " " $met "
    }
    for p in $PARTS; do
        target "embedded produce / mock, $p partitions >= 0.7" \
            "$(ratio "$(kv "$O/embedded-p$p.kv" produce_mb_s)" "$(kv "$O/mock-p$p.kv" produce_mb_s)")" "v >= 0.7"
    done
    for p in $PARTS; do
        target "embedded tail consume / mock, $p partitions >= 0.7" \
            "$(ratio "$(kv "$O/embedded-p$p.kv" consume_mb_s)" "$(kv "$O/mock-p$p.kv" consume_mb_s)")" "v >= 0.7"
    done
    target "embedded light p50 <= 1 ms" "$(kv "$O/embedded-latency.kv" latency_p50_ms)" "v <= 1"
    target "embedded half-rate p99 <= 5 ms" "$(kv "$O/embedded-half.kv" half_p99_ms)" "v <= 5"
    for p in $PARTS; do
        target "S3 produce / PUT + txn pipeline, $p partitions >= 0.8" \
            "$(ratio "$(kv "$O/s3-p$p.kv" produce_mb_s)" "$(pv "$O/s3-raw$p.txt" pipeline MB/s)")" "v >= 0.8"
    done
    target "S3 light p50 - pipeline single-object p50 <= 2 ms" \
        "$(awk -v a="$(kv "$O/s3-latency.kv" latency_p50_ms)" -v b="$(pv "$O/s3-rawone.txt" pipeline p50_ms)" \
            'BEGIN { if (a != "" && b != "") printf "%.2f", a - b }')" "v <= 2"
    for p in $PARTS; do
        target "S3 catch-up / raw ranged GET, $p partitions >= 0.8" \
            "$(ratio "$(kv "$O/s3-cu$p.kv" catchup_mb_s)" "$(pv "$O/s3-raw$p.txt" get MB/s)")" "v >= 0.8"
    done
    for b in embedded s3; do
        for p in $PARTS; do
            target "$b: object PUTs per flush, $p partitions = 1" \
                "$(ratio "$(kv "$O/$b-p$p.kv" objects)" "$(kv "$O/$b-p$p.kv" flushes)")" "v <= 1.0"
        done
        target "$b: RSS per idle partition at $RSS_PARTS <= 2048 B (created / after a restart)" \
            "$(awk -v a="$(kv "$O/$b-rss.kv" rss_before_kib)" -v i="$(kv "$O/$b-rss.kv" rss_idle_kib)" \
                -v r="$(kv "$O/$b-rss.kv" rss_restarted_kib)" -v n="$RSS_PARTS" \
                'BEGIN { if (a == "" || r == "") exit; x = (i - a) * 1024 / n; y = (r - a) * 1024 / n
                    printf "%.0f", (x > y ? x : y) }')" "v <= 2048"
    done
    echo
    NCPU=$(nproc)
    echo "What each throughput target needs, from this run: the rate it asks for and the rate"
    echo "reached; the mock cluster's rate in the same phase (the client with an in-memory broker)"
    echo "and the raw store's, where the target is not already a share of them; the CPUs all"
    echo "processes together (gateway, s3rver, etcd, client) would need at the target rate, at the"
    echo "CPU seconds per GB they spent in the run (table below), against the machine's $NCPU; and"
    echo "the client's busiest thread at the target rate (the share of the phase it ran, scaled"
    echo "from the rate reached; 1 is a whole core).  bound: what cannot carry the target rate --"
    echo "client (the mock cluster's rate below it), store (the raw rate below it), CPUs (needed"
    echo ">= $NCPU), client thread (>= 1); empty when none of these."
    echo
    row " target " " target MB/s " " reached MB/s " " mock MB/s " " raw store MB/s " " CPUs needed " \
        " client thread " " bound "
    row "---" "---:" "---:" "---:" "---:" "---:" "---:" "---"
    # below X W: X is set and less than W.
    below() { [ -n "$1" ] && awk -v x="$1" -v w="$2" 'BEGIN { exit !(x < w) }'; }
    # needs NAME FILE PHASE BASE FACTOR MOCK STORE: one row of the table above.
    needs() {
        local name=$1 f=$2 ph=$3 base=$4 factor=$5 mock=$6 store=$7 want got cpus=0 c busy thr b=()
        want=$(awk -v b="$base" -v k="$factor" 'BEGIN { if (b != "") printf "%.1f", b * k }')
        got=$(kv "$f" "${ph}_mb_s")
        if [ -z "$want" ] || [ -z "$got" ]; then
            row " $name " " $want " " $got " " $mock " " $store " " " " " " "
            return
        fi
        for proc in gateway s3rver etcd client; do
            c=$(cpu_gb "$f" "$ph" "$proc")
            [ -z "$c" ] || cpus=$(awk -v a="$cpus" -v c="$c" -v w="$want" 'BEGIN { printf "%.2f", a + c * w / 1000 }')
        done
        busy=$(kv "$f" "${ph}_client_thread_busy")
        thr=$(awk -v b="$busy" -v w="$want" -v g="$got" 'BEGIN { if (b != "" && g > 0) printf "%.2f", b * w / g }')
        ! below "$mock" "$want" || b+=(client)
        ! below "$store" "$want" || b+=(store)
        ! awk -v c="$cpus" -v n="$NCPU" 'BEGIN { exit !(c >= n) }' || b+=(CPUs)
        [ -z "$thr" ] || ! awk -v t="$thr" 'BEGIN { exit !(t >= 1) }' || b+=("client thread")
        local bound
        bound=$(printf '%s, ' "${b[@]}")
        row " $name " " $want " " $got " " $mock " " $store " " $cpus " " $thr " " ${bound%, } "
    }
    for p in $PARTS; do
        needs "embedded produce, $p partitions (0.7 x mock)" "$O/embedded-p$p.kv" produce \
            "$(kv "$O/mock-p$p.kv" produce_mb_s)" 0.7 "" "$(pv "$O/embedded-raw$p.txt" pipeline MB/s)"
    done
    for p in $PARTS; do
        needs "embedded tail consume, $p partitions (0.7 x mock)" "$O/embedded-p$p.kv" consume \
            "$(kv "$O/mock-p$p.kv" consume_mb_s)" 0.7 "" ""
    done
    for p in $PARTS; do
        needs "S3 produce, $p partitions (0.8 x raw)" "$O/s3-p$p.kv" produce \
            "$(pv "$O/s3-raw$p.txt" pipeline MB/s)" 0.8 "$(kv "$O/mock-p$p.kv" produce_mb_s)" ""
    done
    for p in $PARTS; do
        needs "S3 catch-up, $p partitions (0.8 x raw)" "$O/s3-cu$p.kv" catchup \
            "$(pv "$O/s3-raw$p.txt" get MB/s)" 0.8 "$(kv "$O/mock-p$p.kv" consume_mb_s)" ""
    done
    echo
    echo "CPU seconds per GB of record values (utime + stime from /proc/PID/stat over the phase)."
    echo "client: nh-bench (for the mock cluster, the broker too: it is a thread of nh-bench)."
    echo
    row " phase " " process " " mock " " embedded " " S3 + etcd "
    row "---" "---" "---:" "---:" "---:"
    for p in $PARTS; do
        for ph in produce consume catchup; do
            fe=$O/embedded-p$p.kv fs=$O/s3-p$p.kv fm=$O/mock-p$p.kv
            [ "$ph" != catchup ] || { fe=$O/embedded-cu$p.kv fs=$O/s3-cu$p.kv fm=/nonexistent; }
            for proc in gateway s3rver etcd client; do
                a=$(cpu_gb "$fm" "$ph" "$proc") e=$(cpu_gb "$fe" "$ph" "$proc") s=$(cpu_gb "$fs" "$ph" "$proc")
                [ -n "$a$e$s" ] || continue
                row " $ph, $p partitions " " $proc " " $a " " $e " " $s "
            done
        done
    done
    echo
    echo "The raw limits' own CPU use, in CPU seconds per GB of object bytes (nh-pipeline: utime +"
    echo "stime of the process doing the writes, reads, PUTs and transactions; s3rver and etcd from"
    echo "/proc/PID/stat), to compare with the gateway's rows above."
    echo
    row " phase " " process " " raw dir " " raw S3 + etcd "
    row "---" "---" "---:" "---:"
    # rcpu FILE LINE KEY: CPU seconds of KEY per GB on nh-pipeline's LINE.
    rcpu() {
        local b
        b=$(pv "$1" "$2" bytes)
        [ -n "$b" ] || b=$(awk -v n="$(pv "$1" "$2" objects)" -v s="$(pv "$1" "$2" size)" \
            'BEGIN { if (n != "" && s != "") printf "%.0f", n * s }')
        awk -v c="$(pv "$1" "$2" "$3")" -v b="$b" 'BEGIN { if (c == "" || b == "" || b + 0 == 0) print "";
            else printf "%.2f", c / (b / 1e9) }'
    }
    for p in $PARTS; do
        for l in pipeline get; do
            name="raw write + commit"
            [ "$l" = pipeline ] || name="raw ranged read"
            for k in cpu_s cpu_s3rver_s cpu_etcd_s; do
                d=$(rcpu "$O/embedded-raw$p.txt" "$l" "$k") r=$(rcpu "$O/s3-raw$p.txt" "$l" "$k")
                [ -n "$d$r" ] || continue
                proc=nh-pipeline
                [ "$k" = cpu_s ] || { proc=${k#cpu_}; proc=${proc%_s}; }
                row " $name, objects of the $p-partition run " " $proc " " $d " " $r "
            done
        done
    done
    echo
    echo "Where the gateway's time goes.  Wall time: the averages (ms) of the gateway's own"
    echo "histograms over each latency run -- one object PUT (on the directory store write +"
    echo "fdatasync into the file made ahead for it, else write + fsync + rename + directory"
    echo "fsync), one metadata commit (SQLite or etcd transaction), one flush (from the object's"
    echo "build to the commit's answer), one Produce request (from its arrival to its"
    echo "response) and the event loop's lag (how late a timer due every 100 ms ran:"
    echo "\`nuthatch_event_loop_lag_seconds\`), with the share of its ticks more than 5 ms late;"
    echo "and the share of Produce requests the gateway took more than 5 and 10 ms to answer"
    echo "(from its histogram's buckets: its own tail, to set beside the client's p99); then"
    echo "what the store did over the run: object bytes written per second (flushes, and the"
    echo "segments its lifecycle writes when a partition has more index keys than"
    echo "\`log.index.max.keys\`, copying runs of small chunks into one object), the segments"
    echo "written, and object bytes read per second (no consumer runs: the merges' reads)."
    echo
    row " run " " measurement " " embedded " " S3 + etcd "
    row "---" "---" "---:" "---:"
    for ph in latency half; do
        name=light
        [ "$ph" = latency ] || name="half-rate"
        for k in put commit flush produce looplag; do
            row " $name " " $k " " $(kv "$O/embedded-$ph.kv" "avg_${k}_ms") " " $(kv "$O/s3-$ph.kv" "avg_${k}_ms") "
        done
        row " $name " " loop ticks > 5 ms late (%) " " $(kv "$O/embedded-$ph.kv" looplag_over5_pct) " \
            " $(kv "$O/s3-$ph.kv" looplag_over5_pct) "
        for t in 5 10; do
            row " $name " " Produce requests > $t ms (%) " \
                " $(kv "$O/embedded-$ph.kv" produce_over${t}_pct) " " $(kv "$O/s3-$ph.kv" produce_over${t}_pct) "
        done
        row " $name " " object bytes written (MB/s) " " $(per_s "$O/embedded-$ph.kv" object_bytes) " \
            " $(per_s "$O/s3-$ph.kv" object_bytes) "
        row " $name " " segments written " " $(kv "$O/embedded-$ph.kv" segments) " " $(kv "$O/s3-$ph.kv" segments) "
        row " $name " " object bytes read (MB/s) " " $(per_s "$O/embedded-$ph.kv" object_read_bytes) " \
            " $(per_s "$O/s3-$ph.kv" object_read_bytes) "
    done
    for b in embedded s3; do
        for ph in p${PARTS// / p} latency half; do
            f=$O/$b-prof-$ph.txt
            [ -s "$f" ] || continue
            echo
            what="the throughput run on ${ph#p} partitions (produce, then tail consume)"
            [ "$ph" != latency ] || what="the light latency run"
            [ "$ph" != half ] || what="the half-rate latency run"
            echo "CPU profile of the $b gateway during $what,"
            echo "\`perf record -e cpu-clock -F 499 -p <gateway>\`, shares of its samples.  By thread:"
            echo "$(awk '$1 == "thread" { printf "%s%s %s", sep, $2, $3; sep = ", " }' "$f"); in the kernel:" \
                "$(awk '$1 == "dso" && $2 == "[kernel.kallsyms]" { print $3 }' "$f")."
            echo
            row " share " " thread " " where " " symbol "
            row "---:" "---" "---" "---"
            awk '$1 == "sym" { s = $5; for (i = 6; i <= NF; i++) s = s " " $i
                printf "| %s | %s | %s | `%s` |\n", $2, $3, $4, s }' "$f"
        done
    done
    echo
    echo "Commands: \`make bench\` (= \`bash bench/run.sh --docs\`); sizes as above"
    echo "(NH_BENCH_RECORDS=$RECORDS NH_BENCH_PARTITIONS=\"$PARTS\" NH_BENCH_RATE=$RATE"
    echo "NH_BENCH_SECONDS=$SECONDS_LAT NH_BENCH_LATENCY_WARMUP_SECONDS=$LAT_WARM NH_BENCH_RSS_PARTITIONS=$RSS_PARTS)."
} >"$OUT/table.md"
cat "$OUT/table.md"
if [ "$DOCS" = 1 ]; then
    doc=$ROOT/docs/performance.md
    if grep -q '^<!-- bench:begin -->' "$doc" && grep -q '^<!-- bench:end -->' "$doc"; then
        awk -v t="$OUT/table.md" '
            /^<!-- bench:begin -->/ { print; while ((getline l < t) > 0) print l; skip = 1; next }
            /^<!-- bench:end -->/ { skip = 0 }
            !skip' "$doc" >"$OUT/doc.md" && cat "$OUT/doc.md" >"$doc"
        log "results written to docs/performance.md"
    else
        log "docs/performance.md has no bench:begin/bench:end markers: not written"
    fi
fi
