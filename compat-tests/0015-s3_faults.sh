#!/usr/bin/env bash
# 0015-s3_faults: the gateway rides out the S3 server dying and a long S3
# outage, with its memory bounded.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  The gateway runs with
# a 64 MiB write buffer (write.buffer.bytes; message.max.bytes 1 MiB).  Four
# librdkafka producers (c/nh_client.c: acks=all, every delivery report
# recorded) write 6 MB/s to a topic of 2 partitions while the S3 server
# (s3rver)
#   1. is killed with SIGKILL and, 2 s later, restarted on the same port and
#      directory;
#   2. is killed, stays away 30 s -- long enough for the write buffer to
#      fill, after which the gateway stops reading produce requests -- and is
#      restarted.
# Once it answers again, acknowledgements must resume within 5 s (the
# measured times are printed), the producers never restarting.  The
# producers linger 1 s, so that their requests (librdkafka sends one
# partition's batch per request) are large enough for the write buffer, not
# the cap of requests in flight on a connection (64), to stop the gateway
# reading: its debug log must say so during the outage.  The
# gateway's RSS (VmRSS, every 0.5 s) stays below write.buffer.bytes + 64 MiB
# from the start of the outage until the S3 server answers again; the
# maximum is printed, and that of the catch-up that follows (until 5 s after
# acknowledgements resumed) too.  The caches (read.cache.bytes, tail.cache.bytes)
# are off, so that the bound is about the write path.  After each
# fault every acknowledged record reads back at its offset, unchanged, and
# the offsets have no hole (lib/check_acks.py, as in 0010); at the end the
# producers stop (none may have lost a record), the gateway stops with
# SIGTERM (exit 0) and starts again, and the same check runs on what it reads
# from the stores alone.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
. "$(dirname "$0")/lib/durability.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0015-s3_faults: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

PRODUCERS=4
NPARTS=2
TOPICS=(s3-faults)
DOWN_S=2
OUTAGE_S=30
BUFFER=$((64 << 20))
# About 4 x 1000 records of 1.5 KiB on average a second: 6 MB/s, which
# fills the write buffer some 10 s into the outage; requests of some 750 kB,
# 4 connections x 64 of them in flight could hold 190 MB.
export NH_PRODUCE_RATE=${NH_PRODUCE_RATE:-1000}
export NH_PRODUCE_VALUE_MAX=${NH_PRODUCE_VALUE_MAX:-3000}
export NH_PRODUCE_LINGER_MS=${NH_PRODUCE_LINGER_MS:-1000}
# The debug log tells when the write buffer is full.
NH_LOG_LEVEL=debug
RSS_LIMIT_KB=$(((BUFFER + (64 << 20)) >> 10))

dur_init 0015
dur_start --write.buffer.bytes "$BUFFER" --message.max.bytes 1048576 \
    --read.cache.bytes 0 --tail.cache.bytes 0 || exit 1
echo "gateway on 127.0.0.1:$PORT (pid $NH_PID), etcd at $NH_ETCD_ENDPOINT, s3rver at $NH_S3_ENDPOINT (pid $NH_S3_PID)"
timeout 60 "$CLIENT" create "$NH_BOOTSTRAP" "$NPARTS" "${TOPICS[@]}" || { fail "creating topics"; exit 1; }
rss_sample_start "$NH_PID" "$WORK/rss"
dur_produce "$PRODUCERS" "$NPARTS" "${TOPICS[@]}"
dur_wait_acked_over 5000 || { fail "no acknowledgements before the faults"; exit 1; }
sleep 2

# RSS samples (kB) between times $1 and $2 (ms): "max N samples".
rss_between() {
    awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b && $2 != "" {
        n++; if ($2 > m) m = $2 } END { print m + 0, n + 0 }' "$WORK/rss"
}

# 1. The S3 server killed and restarted.
a0=$(dur_acked)
svc_kill s3
echo "kill: s3rver killed with $a0 records acknowledged"
sleep "$DOWN_S"
a1=$(dur_acked)
svc_restart s3
t=$(ms)
echo "kill: s3rver restarted after ${DOWN_S} s (pid $NH_S3_PID); $((a1 - a0)) acknowledged while down"
dur_recovery restart s3 "$t"
restart_ms=$DUR_RECOVERED_MS
sleep 3
dur_check --live after-restart "$NPARTS" "${TOPICS[@]}"

# 2. A 30 s outage.
sleep 2
a0=$(dur_acked)
t_out=$(ms)
read -r rss0 _ <<<"$(rss_between $((t_out - 2000)) "$t_out")"
l_out=$(wc -l <"$NH_DIR/server.log")
svc_kill s3
echo "outage: s3rver killed with $a0 records acknowledged, gateway RSS $((rss0 >> 10)) MiB"
sleep "$OUTAGE_S"
a1=$(dur_acked)
l_back=$(wc -l <"$NH_DIR/server.log")
svc_restart s3
t=$(ms)
echo "outage: s3rver restarted after ${OUTAGE_S} s (pid $NH_S3_PID); $((a1 - a0)) acknowledged meanwhile"
dur_recovery outage s3 "$t"
outage_ms=$DUR_RECOVERED_MS
t_back=$DUR_ANSWERED_AT
[ "$t_back" -gt 0 ] || t_back=$(ms)
read -r rss_max n <<<"$(rss_between "$t_out" "$t_back")"
echo "outage: max RSS $rss_max kB ($((rss_max >> 10)) MiB) until s3rver answered again ($n samples)," \
    "limit $RSS_LIMIT_KB kB (write.buffer.bytes + 64 MiB)"
[ "$n" -ge $((OUTAGE_S * 2 - 5)) ] || fail "outage: only $n RSS samples"
[ "$rss_max" -lt "$RSS_LIMIT_KB" ] || fail "outage: RSS $rss_max kB, not below $RSS_LIMIT_KB kB"
sleep 5
read -r rss_catch n <<<"$(rss_between "$t_back" "$(ms)")"
echo "outage: max RSS $rss_catch kB ($((rss_catch >> 10)) MiB) in the catch-up, until 5 s after" \
    "acknowledgements resumed ($n samples)$([ "$rss_catch" -lt "$RSS_LIMIT_KB" ] ||
        echo ": above write.buffer.bytes + 64 MiB")"
# The buffer must have filled, or the bound proved nothing.
full=$(sed -n "$((l_out + 1)),${l_back}p" "$NH_DIR/server.log" | grep -c 'write buffer full')
echo "outage: RSS grew by $(((rss_max - rss0) >> 10)) MiB; a produce waited for the full write" \
    "buffer $full times: $(sed -n "$((l_out + 1)),${l_back}p" "$NH_DIR/server.log" |
        grep -o 'write buffer full ([0-9]* bytes)' | head -1)"
[ "$full" -gt 0 ] || fail "outage: the write buffer never filled"

dur_stop_producers
rss_sample_stop
read -r rss_all _ <<<"$(rss_between 0 "$(ms)")"
echo "$(dur_acked) records acknowledged in all; max RSS of the whole run $((rss_all >> 10)) MiB"
dur_check after-faults "$NPARTS" "${TOPICS[@]}"

nh_stop || fail "nuthatch exited $? after SIGTERM"
dur_start --message.max.bytes 1048576 || { fail "restart after SIGTERM"; exit 1; }
dur_check after-sigterm "$NPARTS" "${TOPICS[@]}"
nh_stop || fail "the last SIGTERM stop"

echo "recovery: ${restart_ms} ms after the restart, ${outage_ms} ms after the outage (limit" \
    "$DUR_RECOVERY_MS ms); max RSS in the outage $((rss_max >> 10)) MiB (limit" \
    "$((RSS_LIMIT_KB >> 10)) MiB), in the catch-up $((rss_catch >> 10)) MiB"
if [ "$failures" -ne 0 ]; then
    echo "0015-s3_faults: $failures failure(s)"
    grep -h -E 'WARN|ERROR' "$NH_DIR"/server.log* | tail -40 >&2
    exit 1
fi
echo "0015-s3_faults: ok"
