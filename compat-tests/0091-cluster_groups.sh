#!/usr/bin/env bash
# 0091-cluster_groups: consumer groups in a cluster of three gateways on one
# etcd and one S3-protocol server (lib/nh_cluster.sh): one coordinator per
# group, committed offsets that survive the coordinator's death.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  cluster.lease.ms 3000.
# lib/group_coord.py speaks FindCoordinator v1, OffsetCommit v2 and
# OffsetFetch v1 by hand.
#   1. Every node names the same live coordinator for each of 12 groups, and
#      the groups are spread over more than one node.  Offsets are committed
#      through each group's coordinator; the other nodes answer
#      NOT_COORDINATOR to OffsetCommit and OffsetFetch.
#   2. confluent-kafka-python: a consumer of group real-g joins (subscribe),
#      gets all 4 partitions and commits offsets synchronously.
#   3. The coordinator of real-g is killed with SIGKILL: once the survivors
#      dropped it, each group has one agreed coordinator among them, the
#      groups it did not coordinate kept theirs, and every committed offset
#      (12 groups and real-g, read through its new coordinator) is intact; a
#      new confluent-kafka-python consumer of real-g reads them with
#      committed() and joins again.
#   4. The node restarts: every group is back on its first coordinator, the
#      offsets unchanged.
# NH_CLUSTER_LOOPS=N (default 1; 5 in the long target) repeats 3 and 4,
# killing in round n > 1 the coordinator of group g<n>.
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0091-cluster_groups: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
LIB=$(dirname "$0")/lib
TOPIC=cg-topic
NPARTS=4
GROUPS_=(g00 g01 g02 g03 g04 g05 g06 g07 g08 g09 g10 g11)
NHC_ARGS=(--cluster.lease.ms 3000 --num.partitions "$NPARTS")

gc() { timeout 60 /usr/bin/python3 "$LIB/group_coord.py" "$@"; }
# The ports of the live nodes "$@", comma-separated.
ports_of() {
    local p="" i
    for i in "$@"; do p+="${p:+,}${NHC_PORT[i]}"; done
    echo "$p"
}

# confluent-kafka-python: join real-g through node $1's bootstrap, commit
# offset 500 + p for every partition (mode commit), or print the committed
# offsets and join again (mode check).
real_client() {
    timeout 90 /usr/bin/python3 - "$1" "$2" "$TOPIC" "$NPARTS" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, mode, topic, nparts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "real-g",
              "enable.auto.commit": False, "session.timeout.ms": 6000,
              "auto.offset.reset": "earliest"})
tps = [TopicPartition(topic, p) for p in range(nparts)]
if mode == "check":
    got = c.committed(tps, timeout=30)
    print(" ".join("%d:%d" % (tp.partition, tp.offset) for tp in got), flush=True)
c.subscribe([topic])
deadline = time.monotonic() + 60
while not c.assignment() and time.monotonic() < deadline:
    c.poll(0.2)
if len(c.assignment()) != nparts:
    sys.exit("assignment %s" % c.assignment())
if mode == "commit":
    c.commit(offsets=[TopicPartition(topic, p, 500 + p) for p in range(nparts)],
             asynchronous=False)
c.close()
print("joined", flush=True)
PY
}

nhc_init 3 || exit 1
nhc_start 1 || exit 1
# The topic exists before the other nodes load the catalog.
timeout 30 /usr/bin/python3 -c "
import sys; sys.path.insert(0, '$LIB'); import kafka_wire as kw
c = kw.Conn('127.0.0.1:${NHC_PORT[1]}')
r = kw.metadata_v4(c, '$TOPIC')
assert r['$TOPIC'] == (0, $NPARTS), r" || fail "creating $TOPIC"
nhc_start 2 || exit 1
nhc_start 3 || exit 1
ALL=$(ports_of 1 2 3)

# 1. One coordinator per group, spread; commits through it only.
gc coords "$ALL" "${GROUPS_[@]}" real-g >"$NH_DIR/coords1" || fail "coordinators with 3 nodes"
[ "$(awk '{print $2}' "$NH_DIR/coords1" | sort -u | wc -l)" -ge 2 ] ||
    fail "all groups on one coordinator: $(tr '\n' ' ' <"$NH_DIR/coords1")"
echo "coordinators: $(tr '\n' ' ' <"$NH_DIR/coords1")"
for i in "${!GROUPS_[@]}"; do
    gc commit "$ALL" "${GROUPS_[i]}" "$TOPIC" "$NPARTS" $((100 * i)) || fail "commit ${GROUPS_[i]}"
done

# 2. A real consumer group.
out=$(real_client "$NHC_BOOTSTRAP" commit 2>&1)
[ "$(echo "$out" | tail -1)" = joined ] || fail "confluent consumer (commit): $out"
gc verify "$ALL" real-g "$TOPIC" "$NPARTS" 500 || fail "real-g offsets before the kill"

for ((loop = 0; loop < ${NH_CLUSTER_LOOPS:-1}; loop++)); do
# 3. Kill the coordinator of real-g (in later rounds, of another group).
target=real-g
[ "$loop" -eq 0 ] || target=${GROUPS_[loop % ${#GROUPS_[@]}]}
victim=$(awk -v g="$target" '$1 == g {print $2}' "$NH_DIR/coords1")
echo "round $((loop + 1)): killing node $victim, coordinator of $target"
survivors=()
for i in 1 2 3; do [ "$i" = "$victim" ] || survivors+=("$i"); done
LIVE=$(ports_of "${survivors[@]}")
nhc_kill "$victim"
start=$(date +%s%N)
for t in $(seq 1 100); do
    ok=1
    for i in "${survivors[@]}"; do
        n=$(timeout 20 /usr/bin/python3 "$LIB/cluster_view.py" "127.0.0.1:${NHC_PORT[i]}" | sed -n 1p |
            tr ',' '\n' | grep -c '@')
        [ "$n" = 2 ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.2
done
echo "node $victim dropped after $((($(date +%s%N) - start) / 1000000)) ms"
gc coords "$LIVE" "${GROUPS_[@]}" real-g >"$NH_DIR/coords2" || fail "coordinators after the kill"
while read -r g node; do
    now=$(awk -v g="$g" '$1 == g {print $2}' "$NH_DIR/coords2")
    if [ "$node" = "$victim" ]; then
        [ "$now" != "$victim" ] || fail "$g still on the dead node $victim"
    else
        [ "$now" = "$node" ] || fail "$g moved from node $node to $now though node $node lives"
    fi
done <"$NH_DIR/coords1"
for i in "${!GROUPS_[@]}"; do
    gc verify "$LIVE" "${GROUPS_[i]}" "$TOPIC" "$NPARTS" $((100 * i)) ||
        fail "offsets of ${GROUPS_[i]} after the coordinator's death"
done
gc verify "$LIVE" real-g "$TOPIC" "$NPARTS" 500 || fail "real-g offsets after the kill"
boot=""
for i in "${survivors[@]}"; do boot+="${boot:+,}127.0.0.1:${NHC_PORT[i]}"; done
out=$(real_client "$boot" check 2>&1)
[ "$(echo "$out" | head -1)" = "0:500 1:501 2:502 3:503" ] && [ "$(echo "$out" | tail -1)" = joined ] ||
    fail "confluent consumer after the kill: $out"

# 4. The node comes back, and so do its groups.
nhc_start "$victim" || exit 1
gc coords "$ALL" "${GROUPS_[@]}" real-g >"$NH_DIR/coords3" || fail "coordinators after the restart"
cmp -s "$NH_DIR/coords1" "$NH_DIR/coords3" ||
    fail "coordinators after the restart: $(tr '\n' ' ' <"$NH_DIR/coords3")"
for i in "${!GROUPS_[@]}"; do
    gc verify "$ALL" "${GROUPS_[i]}" "$TOPIC" "$NPARTS" $((100 * i)) ||
        fail "offsets of ${GROUPS_[i]} after the restart"
done
done

for i in 1 2 3; do
    nhc_stop "$i" || fail "node $i exited $? on SIGTERM"
done
if [ "$failures" -ne 0 ]; then
    for i in 1 2 3; do
        echo "--- node $i log (tail)" >&2
        tail -20 "$NH_DIR/node$i.log" >&2
    done
    echo "0091-cluster_groups: $failures failure(s)"
    exit 1
fi
echo "0091-cluster_groups: ok"
