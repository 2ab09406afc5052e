#!/usr/bin/env bash
# Operations: /metrics in Prometheus's text format (checked by promtool
# check metrics) with the request, byte, flush, object-store, metadata,
# buffer, cache, partition and connection metrics moving under librdkafka
# producers (c/nh_client.c) and a kcat consumer; /healthz; /readyz.  With
# NH_BACKEND=s3: /readyz turns 503 within 10 s of etcd being frozen
# (SIGSTOP), 200 again within 10 s of it resuming; the same for etcd killed
# (SIGKILL) and restarted on its port and data, and for s3rver killed and
# restarted; each outage and recovery is one log line.  Every acknowledged
# record reads back at the end.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
. "$(dirname "$0")/lib/durability.sh"
failures=0
PROMTOOL=${NH_PROMTOOL:-promtool}
command -v "$PROMTOOL" >/dev/null || { echo "0071: no promtool (Debian package prometheus): skipped"; exit 77; }
dur_init metrics
export NH_PRODUCE_RATE=200

dur_start --metrics.listen 127.0.0.1:0 || exit 1
MPORT=$(sed -n 's/.* metrics: serving .* on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$NH_DIR/server.log" | head -1)
[ -n "$MPORT" ] || { tail "$NH_DIR/server.log"; echo "no metrics port in the log"; exit 1; }
M=http://127.0.0.1:$MPORT
echo "metrics on $M"

code() { curl -s -o "$WORK/body" -w '%{http_code}' -m 5 "$M$1"; }
# metric NAME{LABELS}: its value (0 when absent).
metric() {
    awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }' "$WORK/metrics"
}
positive() {
    local v
    v=$(metric "$1")
    awk -v v="$v" 'BEGIN { exit !(v > 0) }' || fail "$1 is $v, expected > 0"
}
scrape() {
    curl -fsS -m 5 "$M/metrics" >"$WORK/metrics" || { fail "GET /metrics failed"; return 1; }
    if ! "$PROMTOOL" check metrics <"$WORK/metrics" >"$WORK/promtool.out" 2>&1; then
        fail "promtool check metrics ($1): $(head -5 "$WORK/promtool.out")"
    fi
}
# wait_ready WANT_CODE SECONDS: until /readyz answers WANT_CODE; prints the time.
wait_ready() {
    local want=$1 t0 deadline c
    t0=$(ms)
    deadline=$((t0 + $2 * 1000))
    while :; do
        c=$(code /readyz)
        if [ "$c" = "$want" ]; then
            echo "  /readyz $want after $(($(ms) - t0)) ms: $(cat "$WORK/body")"
            return 0
        fi
        if [ "$(ms)" -ge "$deadline" ]; then
            fail "/readyz still $c (not $want) after $2 s: $(cat "$WORK/body")"
            return 1
        fi
        sleep 0.2
    done
}

[ "$(code /healthz)" = 200 ] || fail "/healthz: $(cat "$WORK/body")"
wait_ready 200 15
[ "$(code /nothing)" = 404 ] || fail "/nothing is no 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST "$M/metrics")" = 405 ] ||
    fail "POST /metrics is no 405"

"$CLIENT" create "$NH_BOOTSTRAP" 2 metrics-topic || fail "create failed"
dur_produce 2 2 metrics-topic
dur_wait_acked_over 300 || fail "no acknowledgements"
timeout 60 kcat -b "$NH_BOOTSTRAP" -C -t metrics-topic -p 0 -o beginning -c 50 -e -q >/dev/null ||
    fail "kcat could not read"
scrape "under load"
for k in 'nuthatch_requests_total{api="Produce"}' 'nuthatch_requests_total{api="Fetch"}' \
    'nuthatch_requests_total{api="Metadata"}' 'nuthatch_requests_total{api="ApiVersions"}' \
    'nuthatch_request_duration_seconds_count{api="Produce"}' \
    'nuthatch_request_duration_seconds_bucket{api="Produce",le="+Inf"}' \
    nuthatch_received_bytes_total nuthatch_sent_bytes_total \
    nuthatch_flushes_total nuthatch_flushed_bytes_total nuthatch_appends_total \
    'nuthatch_object_requests_total{op="put"}' \
    'nuthatch_object_request_duration_seconds_count{op="put"}' nuthatch_object_written_bytes_total \
    nuthatch_flush_size_bytes_count nuthatch_flush_duration_seconds_count \
    nuthatch_metadata_commit_duration_seconds_count \
    nuthatch_connections nuthatch_connections_accepted_total nuthatch_topics \
    nuthatch_write_buffer_limit_bytes 'nuthatch_store_reachable{store="object"}' \
    'nuthatch_store_reachable{store="metadata"}' nuthatch_ready; do
    positive "$k"
done
[ "$(metric nuthatch_partitions)" -ge 2 ] || fail "nuthatch_partitions $(metric nuthatch_partitions)"
grep -q '^nuthatch_tail_cache_bytes ' "$WORK/metrics" || fail "no nuthatch_tail_cache_bytes"
grep -q '^nuthatch_read_cache_bytes ' "$WORK/metrics" || fail "no nuthatch_read_cache_bytes"
grep -q '^nuthatch_write_buffer_bytes ' "$WORK/metrics" || fail "no nuthatch_write_buffer_bytes"
for k in nuthatch_buffer_pool_mapped_total nuthatch_buffer_pool_reused_total \
    nuthatch_buffer_pool_moved_bytes_total nuthatch_buffer_pool_kept_bytes \
    nuthatch_manifests_unwound_total; do
    grep -q "^$k " "$WORK/metrics" || fail "no $k"
done
# The lifecycle's figures: index keys once a fold has run (every second by
# default), the rest present.
for _ in $(seq 1 20); do
    [ "$(metric nuthatch_index_keys)" -gt 0 ] && break
    sleep 0.5
    scrape "waiting for a fold"
done
positive nuthatch_index_keys
positive nuthatch_index_keys_partition_max
for k in nuthatch_manifests_unfolded nuthatch_segments_written_total nuthatch_segment_chunks_total \
    nuthatch_chunks_expired_total nuthatch_gc_objects_deleted_total nuthatch_gc_deleted_bytes_total; do
    grep -q "^$k " "$WORK/metrics" || fail "no $k"
done
echo "  $(grep -c '^nuthatch_' "$WORK/metrics") samples; promtool: ok"

# outage SVC WHAT: /readyz 503 once SVC is down, 200 once it is back.
if [ "$NH_BACKEND" = s3 ]; then
    echo "etcd frozen (SIGSTOP)"
    kill -STOP "$NH_ETCD_PID"
    wait_ready 503 10
    grep -q 'metadata store' "$WORK/body" || fail "the reason does not name the metadata store"
    [ "$(code /healthz)" = 200 ] || fail "/healthz while etcd is frozen"
    scrape "etcd frozen"
    [ "$(metric nuthatch_ready)" = 0 ] || fail "nuthatch_ready is not 0 while etcd is frozen"
    sleep 2
    kill -CONT "$NH_ETCD_PID"
    echo "etcd resumed (SIGCONT)"
    wait_ready 200 10

    echo "etcd killed (SIGKILL)"
    svc_kill etcd
    wait_ready 503 10
    sleep 2
    svc_restart etcd
    echo "etcd restarted"
    wait_ready 200 15

    echo "s3rver killed (SIGKILL)"
    svc_kill s3
    wait_ready 503 10
    grep -q 'object store' "$WORK/body" || fail "the reason does not name the object store"
    sleep 2
    svc_restart s3
    echo "s3rver restarted"
    wait_ready 200 15
    for what in 'metadata store unreachable' 'metadata store reachable again' \
        'object store unreachable' 'object store reachable again'; do
        n=$(grep -c "health: $what" "$NH_DIR/server.log")
        echo "  log: $n x '$what'"
        [ "$n" -ge 1 ] || fail "no '$what' in the log"
    done
    grep 'health: ' "$NH_DIR/server.log" | sed 's/^/  | /'
    scrape "after the outages"
fi

dur_stop_producers
dur_check end 2 metrics-topic
nh_stop || fail "SIGTERM stop failed"
[ "$failures" -eq 0 ] || { echo "0071-metrics_health: $failures failures"; tail -20 "$NH_DIR/server.log"; exit 1; }
echo "0071-metrics_health: ok"
