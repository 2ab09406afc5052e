#!/usr/bin/env bash
# 0094-cluster_takeover: the leader of busy partitions dies (SIGKILL) under
# idempotent producers; the new leaders take the partitions over from the
# store, and nothing acknowledged is lost or stored twice.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  Three gateways
# (lib/nh_cluster.sh), cluster.lease.ms 3000, log.index.max.keys 20 (merging
# all along), a topic of 6 partitions.
# confluent-kafka-python (lib/takeover.py produce: enable.idempotence,
# acks=all, one value per message, about 1000 a second) produces to every
# partition all along,
# recording each delivery report.  Then NH_CLUSTER_LOOPS times (default 1;
# 5 in the long target):
#   1. The leader of partition 0 is killed (SIGKILL).  Within the lease TTL
#      + 2 s (+ 3 s for a loaded machine) the survivors agree that they lead
#      all 6 partitions, and each leader appends (lib/takeover.py probe:
#      Produce v3 at the leader is stored at or above its high watermark,
#      the other nodes answer NOT_LEADER_OR_FOLLOWER).
#   2. Hand-built OffsetForLeaderEpoch v2 at each partition's leader, for
#      every epoch from 0 to the current one (lib/takeover.py epochs): an
#      earlier epoch ends at the base offset of the first stored batch of a
#      later epoch, the current one at the high watermark.
#   3. The killed node restarts and leads its partitions again (moved back
#      to it: every node agrees on the first leaders), and they take appends.
# Finally the producer stops and flushes: every acknowledged value is stored
# once, at its acknowledged partition and offset, and each partition's
# offsets are contiguous (lib/takeover.py verify); 2. again.
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0094-cluster_takeover: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
LIB=$(dirname "$0")/lib
TOPIC=takeover-topic
NPARTS=6
# Few index keys per partition: chunks are merged into segments all along,
# also across what a node knew of a partition it takes back.
NHC_ARGS=(--cluster.lease.ms 3000 --num.partitions "$NPARTS" --log.index.max.keys 20)

tk() { timeout 300 /usr/bin/python3 "$LIB/takeover.py" "$@"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

nhc_init 3 || exit 1
nhc_start 1 || exit 1
nhc_start 2 || exit 1
nhc_start 3 || exit 1

pl leaders "127.0.0.1:${NHC_PORT[1]}" "$TOPIC" >/dev/null || fail "creating $TOPIC"
agree 1 2 3 || fail "the nodes do not agree on the leaders"
cp "$NH_DIR/lead" "$NH_DIR/lead.first"
echo "leaders: $(awk '{print $1 "@" $2}' "$NH_DIR/lead" | tr '\n' ' ')"

STOP=$NH_DIR/stop
tk produce "$NHC_BOOTSTRAP" "$TOPIC" "$NPARTS" "$NH_DIR/acks" "$STOP" >"$NH_DIR/producer.out" 2>&1 &
PRODUCER=$!
sleep 3

for ((loop = 0; loop < ${NH_CLUSTER_LOOPS:-1}; loop++)); do
    victim=$(awk '$1 == 0 {print $2}' "$NH_DIR/lead.first")
    survivors=()
    for i in 1 2 3; do [ "$i" = "$victim" ] || survivors+=("$i"); done
    before=$(wc -l <"$NH_DIR/acks")
    echo "round $((loop + 1)): killing node $victim ($before records acknowledged so far)"
    nhc_kill "$victim"
    start=$(date +%s%N)
    served=0
    for t in $(seq 1 100); do
        if agree "${survivors[@]}" && awk -v v="$victim" '$2 == v {exit 1}' "$NH_DIR/lead" &&
            out=$(tk probe "$(ports_of "${survivors[@]}")" "$TOPIC" "$NH_DIR/lead" 2>&1); then
            served=1
            break
        fi
        sleep 0.1
    done
    took=$(ms_since "$start")
    echo "round $((loop + 1)): the survivors lead and append to every partition $took ms after the kill"
    [ "$served" = 1 ] || fail "round $((loop + 1)): no takeover: ${out:-}"
    [ "$took" -le 8000 ] || fail "round $((loop + 1)): takeover after $took ms (lease 3000 ms)"
    out=$(tk epochs "$(ports_of "${survivors[@]}")" "$TOPIC" "$NH_DIR/lead" 2>&1) ||
        fail "round $((loop + 1)): OffsetForLeaderEpoch: $out"
    echo "round $((loop + 1)): epochs $(head -n "$NPARTS" <<<"$out" | tr '\n' ' ')"

    nhc_start "$victim" || exit 1
    back=0
    for t in $(seq 1 100); do
        if agree 1 2 3 && cmp -s "$NH_DIR/lead" "$NH_DIR/lead.first" &&
            out=$(tk probe "$(ports_of 1 2 3)" "$TOPIC" "$NH_DIR/lead" 2>&1); then
            back=1
            break
        fi
        sleep 0.1
    done
    [ "$back" = 1 ] || fail "round $((loop + 1)): node $victim does not lead its partitions again: ${out:-}"
    sleep 2
done

touch "$STOP"
wait "$PRODUCER" || fail "producer: $(cat "$NH_DIR/producer.out")"
echo "producer: $(cat "$NH_DIR/producer.out")"
agree 1 2 3 || fail "the nodes do not agree on the leaders at the end"
out=$(tk verify "$(ports_of 1 2 3)" "$TOPIC" "$NH_DIR/lead" "$NH_DIR/acks" 2>&1) || fail "verify: $out"
echo "verify: $(head -n 1 <<<"$out")"
out=$(tk epochs "$(ports_of 1 2 3)" "$TOPIC" "$NH_DIR/lead" 2>&1) ||
    fail "OffsetForLeaderEpoch at the end: $out"
echo "epochs at the end: $(head -n "$NPARTS" <<<"$out" | tr '\n' ' ')"

[ "$failures" -eq 0 ] || exit 1
echo "0094-cluster_takeover: ok"
