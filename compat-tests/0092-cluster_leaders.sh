#!/usr/bin/env bash
# 0092-cluster_leaders: one leader per partition in a cluster of three
# gateways on one etcd and one S3-protocol server (lib/nh_cluster.sh).
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  cluster.lease.ms 3000.
# lib/part_leaders.py speaks Metadata v4, Produce v3, Fetch v4, ListOffsets
# v1 and OffsetForLeaderEpoch v0 by hand.
#   1. A topic of 12 partitions created through node 2 after all three
#      started is known to every node (the catalog watch); every node names
#      the same leader for each partition, and the leaders are spread over
#      more than one node.
#   2. Each partition's leader appends and serves it; the two other nodes
#      answer NOT_LEADER_OR_FOLLOWER to Produce, Fetch, ListOffsets and
#      OffsetForLeaderEpoch for it.
#   3. kcat produces 120 messages through node 1's bootstrap (librdkafka
#      sends each partition's batches to its leader) and consumes all 144
#      back through node 3's bootstrap.
#   4. A node is killed (SIGKILL): once the survivors dropped it, they agree
#      on the leaders again, the partitions it led moved to them and the
#      others kept their leader.  (Nothing is produced while it is dead: the
#      takeover of a partition's state is not built yet, docs/cluster.md.)
#   5. It restarts: every partition is back on its first leader, and 2.
#      passes again (offsets go on from each high watermark; Fetch v11 at
#      the leader with the partition's leader epoch -- raised by each move,
#      as ListOffsets v4 answers it -- succeeds, one below is fenced).
#   6. The leader of partition 0 is stopped (SIGSTOP) for 6 s, past its
#      3 s lease; a produce sent to it meanwhile is answered
#      NOT_LEADER_OR_FOLLOWER after the resume and not stored.  Once the
#      lease expired, the partition's new leader takes it over and appends
#      two records right after the paused leader's last.  After the resume
#      the paused node takes the partition back (caught up: its next
#      append follows those two) and acknowledges again.
#   7. A topic created through node 1 and deleted through node 2
#      (confluent-kafka-python's AdminClient) is unknown to all three.
# NH_CLUSTER_LOOPS=N (default 1; 5 in the long target) repeats 4 and 5,
# killing the nodes in turn (the busiest leader first).
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0092-cluster_leaders: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
LIB=$(dirname "$0")/lib
TOPIC=lead-topic
NPARTS=12
NHC_ARGS=(--cluster.lease.ms 3000 --num.partitions "$NPARTS")


nhc_init 3 || exit 1
nhc_start 1 || exit 1
nhc_start 2 || exit 1
nhc_start 3 || exit 1

# 1. Created through node 2, seen by all, one agreed leader per partition.
pl leaders "127.0.0.1:${NHC_PORT[2]}" "$TOPIC" >"$NH_DIR/created" || fail "creating $TOPIC"
agree 1 2 3 || fail "the nodes do not agree on the leaders: $(cat "$NH_DIR"/lead.* | tr '\n' ' ')"
echo "leaders: $(awk '{print $1 "@" $2}' "$NH_DIR/lead" | tr '\n' ' ')"
[ "$(awk '{print $2}' "$NH_DIR/lead" | sort -u | wc -l)" -ge 2 ] || fail "every partition on one node"

# 2. Leaders serve, the others refuse.
out=$(pl check "$(ports_of 1 2 3)" "$TOPIC" "$NH_DIR/lead") || fail "leaders and refusals: $out"

# 3. A real client follows the leaders.
seq 1 120 | timeout 60 kcat -P -b "127.0.0.1:${NHC_PORT[1]}" -t "$TOPIC" \
    2>"$NH_DIR/kcat.p" || fail "kcat produce: $(cat "$NH_DIR/kcat.p")"
n=$(timeout 60 kcat -C -b "127.0.0.1:${NHC_PORT[3]}" -t "$TOPIC" -o beginning -e -q 2>"$NH_DIR/kcat.c" | wc -l)
echo "kcat consumed $n messages through node 3"
[ "$n" = 144 ] || fail "kcat consumed $n of 144 messages: $(cat "$NH_DIR/kcat.c")"

cp "$NH_DIR/lead" "$NH_DIR/lead.first"
for ((loop = 0; loop < ${NH_CLUSTER_LOOPS:-1}; loop++)); do
# 4. A node dies: its partitions move to the survivors, the others stay.
victim=$(awk '{print $2}' "$NH_DIR/lead.first" | sort | uniq -c | sort -rn |
    awk -v k=$((loop % 3 + 1)) 'NR == k {print $2}')
[ -n "$victim" ] || victim=$(awk 'NR == 1 {print $2}' "$NH_DIR/lead.first")
survivors=()
for i in 1 2 3; do [ "$i" = "$victim" ] || survivors+=("$i"); done
echo "round $((loop + 1)): killing node $victim"
nhc_kill "$victim"
start=$(date +%s%N)
moved=0
for t in $(seq 1 60); do
    if agree "${survivors[@]}" && awk -v v="$victim" '$2 == v {exit 1}' "$NH_DIR/lead"; then
        moved=1
        break
    fi
    sleep 0.2
done
echo "leaders moved after $((($(date +%s%N) - start) / 1000000)) ms: $(awk '{print $1 "@" $2}' "$NH_DIR/lead" | tr '\n' ' ')"
[ "$moved" = 1 ] || fail "partitions of node $victim did not move: $(tr '\n' ' ' <"$NH_DIR/lead")"
while read -r p before; do
    now=$(awk -v p="$p" '$1 == p {print $2}' "$NH_DIR/lead")
    if [ "$before" != "$victim" ] && [ "$now" != "$before" ]; then
        fail "partition $p moved from node $before to $now though node $before lives"
    fi
done <"$NH_DIR/lead.first"

# 5. It restarts and leads the same partitions again; they serve on.
nhc_start "$victim" || exit 1
back=0
for t in $(seq 1 60); do
    if agree 1 2 3 && cmp -s "$NH_DIR/lead" "$NH_DIR/lead.first"; then
        back=1
        break
    fi
    sleep 0.2
done
[ "$back" = 1 ] || fail "node $victim did not lead its partitions again: $(tr '\n' ' ' <"$NH_DIR/lead")"
out=$(pl check "$(ports_of 1 2 3)" "$TOPIC" "$NH_DIR/lead") || fail "after the restart: $out"
done

# 6. The leader of partition 0 is paused past its lease: what it is sent
#    meanwhile is refused, not stored; another node takes the partition
#    over and appends; the paused node, back, appends after those.
agree 1 2 3 || fail "the nodes do not agree on the leaders before the pause"
l0=$(awk '$1 == 0 {print $2}' "$NH_DIR/lead")
others=""
for i in 1 2 3; do [ "$i" = "$l0" ] || others+="${others:+,}127.0.0.1:${NHC_PORT[i]}"; done
out=$(pl pause "127.0.0.1:${NHC_PORT[l0]}" "${NHC_PID[l0]}" "$TOPIC" 0 6 "$others" 2>&1) ||
    fail "pause of node $l0: $out"
echo "pause of node $l0: $out"

# 7. A topic deleted through one node goes from the others (the catalog watch).
pl leaders "127.0.0.1:${NHC_PORT[1]}" gone-topic >/dev/null || fail "creating gone-topic"
t=0
until [ "$(pl error "127.0.0.1:${NHC_PORT[3]}" gone-topic)" = 0 ] || [ $((t += 1)) -gt 50 ]; do sleep 0.2; done
[ "$t" -le 50 ] || fail "node 3 does not know gone-topic"
timeout 60 /usr/bin/python3 -c "
from confluent_kafka.admin import AdminClient
a = AdminClient({'bootstrap.servers': '127.0.0.1:${NHC_PORT[2]}'})
a.delete_topics(['gone-topic'])['gone-topic'].result(30)" || fail "deleting gone-topic"
for i in 1 2 3; do
    t=0
    until [ "$(pl error "127.0.0.1:${NHC_PORT[i]}" gone-topic)" = 3 ] || [ $((t += 1)) -gt 50 ]; do
        sleep 0.2
    done
    [ "$t" -le 50 ] || fail "node $i still knows gone-topic after its deletion"
done

[ "$failures" -eq 0 ] || exit 1
echo "0092-cluster_leaders: ok"
