#!/usr/bin/env bash
# 0010-crash_durability: nothing acknowledged is lost when the gateway dies.
#
# Four librdkafka producers (compat-tests/c/nh_client.c: acks=all, not
# idempotent, retrying through reconnects) write records with distinct keys,
# binary values and headers to 3 partitions of each of 2 topics, and append
# every successful delivery report to a file.  Meanwhile the gateway is killed
# with SIGKILL five times, each time in the middle of the stream, and
# restarted on the same port and data directory.  Then the producers stop and
# every partition is read from offset 0 to its high watermark (lib/durability.sh,
# lib/check_acks.py):
#   - every acknowledged record is at its offset with the same key, value and
#     headers;
#   - each partition's offsets run from 0 to the high watermark - 1 without a
#     hole;
#   - no offset is acknowledged twice with different content, and a record
#     stored twice (a retry whose first acknowledgement was lost, which is
#     allowed) is byte-identical both times.
# Then a SIGTERM stop (exit 0 within 5 s), a restart and the same checks.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
. "$(dirname "$0")/lib/durability.sh"

KILLS=5
PRODUCERS=4
NPARTS=3
TOPICS=(crash-a crash-b)

dur_init 0010

dur_start || exit 1
echo "gateway on 127.0.0.1:$PORT, data in $NH_DIR"
timeout 60 "$CLIENT" create "$NH_BOOTSTRAP" "$NPARTS" "${TOPICS[@]}" || { fail "creating topics"; exit 1; }

dur_produce "$PRODUCERS" "$NPARTS" "${TOPICS[@]}"

prev=0
for k in $(seq 1 "$KILLS"); do
    # Mid-stream: the producers are acknowledged again since the restart,
    # then a little longer.
    dur_wait_acked_over "$prev" || { fail "before kill $k: no acknowledgement in 30 s"; break; }
    sleep "0.$((RANDOM % 9 + 1))"
    nh_kill
    now=$(dur_acked)
    echo "kill $k: $now records acknowledged in all, $((now - prev)) since the $([ "$k" = 1 ] &&
        echo start || echo previous restart)"
    prev=$now
    sleep "0.$((RANDOM % 5))"
    dur_start || { fail "restart $k"; break; }
done
dur_wait_acked_over "$prev" || fail "after the last restart: no acknowledgement in 30 s"
sleep 1

# Stop the producers: they wait for what is outstanding, then exit.
dur_stop_producers
echo "after the last restart: $(($(dur_acked) - prev)) more acknowledged; $(dur_acked) in all"

dur_check after-kills "$NPARTS" "${TOPICS[@]}"

t0=$(ms)
nh_stop
status=$?
elapsed=$(($(ms) - t0))
echo "SIGTERM: exit status $status after $elapsed ms"
[ "$status" -eq 0 ] || fail "nuthatch exited $status after SIGTERM"
[ "$elapsed" -le 5000 ] || fail "SIGTERM took $elapsed ms (more than 5 s)"

dur_start || { fail "restart after SIGTERM"; exit 1; }
dur_check after-sigterm "$NPARTS" "${TOPICS[@]}"
nh_stop || fail "the last SIGTERM stop"

if [ "$failures" -ne 0 ]; then
    echo "0010-crash_durability: $failures failure(s)"
    grep -h -E 'WARN|ERROR' "$NH_DIR"/server.log* | tail -40 >&2
    exit 1
fi
echo "0010-crash_durability: ok"
