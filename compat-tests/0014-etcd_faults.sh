#!/usr/bin/env bash
# 0014-etcd_faults: the gateway rides out etcd freezing and dying.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  Three librdkafka
# producers (c/nh_client.c: acks=all, every delivery report recorded) write
# to 2 topics of 2 partitions while etcd is
#   1. frozen with SIGSTOP for 8 s, then SIGCONT;
#   2. killed with SIGKILL and, 5 s later, restarted on the same ports and
#      data directory.
# During each fault the producers see retriable errors or late successes;
# once etcd answers again (/health), acknowledgements must resume within
# 5 s (the measured time is printed), the producers never restarting.  After
# each fault every acknowledged record reads back at its offset, unchanged,
# and the offsets have no hole (lib/check_acks.py, as in 0010).  At the end
# the producers stop (none may have lost a record), the gateway stops with
# SIGTERM (exit 0) and is started again, and the same check runs on what it
# reads from the stores alone.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
. "$(dirname "$0")/lib/durability.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0014-etcd_faults: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

PRODUCERS=3
NPARTS=2
TOPICS=(etcd-a etcd-b)
FREEZE_S=8
DOWN_S=5

dur_init 0014
dur_start || exit 1
echo "gateway on 127.0.0.1:$PORT, etcd at $NH_ETCD_ENDPOINT (pid $NH_ETCD_PID), s3rver at $NH_S3_ENDPOINT"
timeout 60 "$CLIENT" create "$NH_BOOTSTRAP" "$NPARTS" "${TOPICS[@]}" || { fail "creating topics"; exit 1; }
dur_produce "$PRODUCERS" "$NPARTS" "${TOPICS[@]}"
dur_wait_acked_over 2000 || { fail "no acknowledgements before the faults"; exit 1; }
sleep 1
dur_check --live before "$NPARTS" "${TOPICS[@]}"

# 1. etcd frozen.
a0=$(dur_acked)
kill -STOP "$NH_ETCD_PID"
echo "freeze: etcd stopped with $a0 records acknowledged"
sleep "$FREEZE_S"
a1=$(dur_acked)
kill -CONT "$NH_ETCD_PID"
t=$(ms)
echo "freeze: SIGCONT after ${FREEZE_S} s; $((a1 - a0)) acknowledged while frozen"
dur_recovery freeze etcd "$t"
freeze_ms=$DUR_RECOVERED_MS
sleep 3
dur_check --live after-freeze "$NPARTS" "${TOPICS[@]}"

# 2. etcd killed and restarted.
a0=$(dur_acked)
svc_kill etcd
echo "kill: etcd killed with $a0 records acknowledged"
sleep "$DOWN_S"
a1=$(dur_acked)
svc_restart etcd
t=$(ms)
echo "kill: etcd restarted after ${DOWN_S} s (pid $NH_ETCD_PID); $((a1 - a0)) acknowledged while down"
dur_recovery restart etcd "$t"
restart_ms=$DUR_RECOVERED_MS
sleep 3
dur_check --live after-restart "$NPARTS" "${TOPICS[@]}"

dur_stop_producers
echo "$(dur_acked) records acknowledged in all"
dur_check after-faults "$NPARTS" "${TOPICS[@]}"

nh_stop || fail "nuthatch exited $? after SIGTERM"
dur_start || { fail "restart after SIGTERM"; exit 1; }
dur_check after-sigterm "$NPARTS" "${TOPICS[@]}"
nh_stop || fail "the last SIGTERM stop"

echo "recovery: ${freeze_ms} ms after the freeze, ${restart_ms} ms after the restart (limit $DUR_RECOVERY_MS ms)"
if [ "$failures" -ne 0 ]; then
    echo "0014-etcd_faults: $failures failure(s)"
    grep -h -E 'WARN|ERROR' "$NH_DIR"/server.log* | tail -40 >&2
    exit 1
fi
echo "0014-etcd_faults: ok"
