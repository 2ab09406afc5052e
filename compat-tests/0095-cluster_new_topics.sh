#!/usr/bin/env bash
# 0095-cluster_new_topics: producing right after a topic's creation on a
# cluster of three gateways (lib/nh_cluster.sh).  A partition has no leader
# until its leader record exists (docs/cluster.md "Leadership"); the node
# that creates a topic writes the records before it answers.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  For each node N:
#   1. an idempotent producer (acks=all, confluent-kafka-python) bootstrapped
#      on node N alone produces 200 records to a topic nobody created, which
#      node N auto-creates (Metadata): every record is delivered, at once;
#   2. an AdminClient bootstrapped on node N creates a 12-partition topic
#      (through the controller), and right after its answer no two nodes'
#      Metadata name different leaders for a partition (a node that has
#      not seen the records yet names none: LEADER_NOT_AVAILABLE), the
#      creator names every one; a producer bootstrapped on the next node
#      then delivers 200 records to it;
#   3. every record of both topics is read back through a third node.
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0095-cluster_new_topics: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

NHC_ARGS=(--cluster.lease.ms 3000 --num.partitions 6)
nhc_init 3 || exit 1
for i in 1 2 3; do nhc_start "$i" || exit 1; done

timeout 300 /usr/bin/python3 - "${NHC_PORT[1]}" "${NHC_PORT[2]}" "${NHC_PORT[3]}" <<'PY'
import sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

nodes = ["127.0.0.1:%s" % p for p in sys.argv[1:4]]
bad = 0

def fail(msg):
    global bad
    print("FAIL: " + msg)
    bad += 1

def produce(bootstrap, topic, tag):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "acks": "all", "message.timeout.ms": 60000})
    errs, ok = [], []
    def dr(e, m):
        (errs if e else ok).append(e or m.value())
    want = [b"%s-%d" % (tag.encode(), i) for i in range(200)]
    t0 = time.monotonic()
    for i, v in enumerate(want):
        p.produce(topic, v, key=b"%d" % i, on_delivery=dr)
    left = p.flush(60)
    took = time.monotonic() - t0
    if errs or left or sorted(ok) != sorted(want):
        fail("%s through %s: %d errors (%s), %d delivered of 200, %d left"
             % (topic, bootstrap, len(errs), errs[:3], len(ok), left))
    print("%s: 200 records through %s alone right after its creation, %.2f s"
          % (topic, bootstrap, took))
    return want

def leaders(bootstrap, topic):
    a = AdminClient({"bootstrap.servers": bootstrap})
    md = a.list_topics(topic, timeout=10).topics[topic]
    return {p.id: p.leader for p in md.partitions.values()}

def read_back(bootstrap, topic, want):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 60
    while len(got) < len(want) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    if sorted(got) != sorted(want):
        fail("%s read back through %s: %d of %d, %d distinct"
             % (topic, bootstrap, len(got), len(want), len(set(got))))

written = {}
for n in range(3):
    node = nodes[n]
    auto = "auto-%d" % (n + 1)
    written[auto] = produce(node, auto, auto)

    made = "made-%d" % (n + 1)
    admin = AdminClient({"bootstrap.servers": node})
    admin.create_topics([NewTopic(made, 12, 1)])[made].result(30)
    # (the client sends CreateTopics to the controller, which creates it)
    views = {other: leaders(other, made) for other in nodes}
    named = {}
    for other, seen in views.items():
        for p, l in seen.items():
            if l < 0:
                continue
            if named.setdefault(p, l) != l:
                fail("%s/%d: %s names leader %d, another node %d" % (made, p, other, l, named[p]))
    if sorted(named) != list(range(12)):
        fail("%s: no node names a leader for some partitions: %s" % (made, views))
    print("%s: leaders %s, no two nodes name different ones (unled: %d answers)"
          % (made, sorted(set(named.values())),
             sum(l < 0 for seen in views.values() for l in seen.values())))
    written[made] = produce(nodes[(n + 1) % 3], made, made)

for n, (topic, want) in enumerate(sorted(written.items())):
    read_back(nodes[(n + 2) % 3], topic, want)
sys.exit(1 if bad else 0)
PY
rc=$?
[ "$rc" -eq 0 ] || exit 1
echo "0095-cluster_new_topics: ok"
