#!/usr/bin/env bash
# 0093-cluster_clients: the client scenarios against a cluster of three
# gateways on one etcd and one S3-protocol server (lib/nh_cluster.sh), with
# a stable membership: each client learns the partitions' leaders from
# Metadata and follows them.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).
#   1. librdkafka (compat-tests/c/roundtrip.c, as 0006): every codec,
#      keys, headers, timestamps, watermarks, offsets for times, commits;
#      then all three nodes restart one by one and it reads everything back.
#   2. kafkajs: an idempotent producer writes 100 records over 4 partitions
#      (acks=-1); a consumer group reads back exactly those 100.
#   3. confluent-kafka-python and kafka-python: an idempotent producer
#      (acks=all) writes 300 records over a 6-partition topic; a consumer
#      group reads back exactly those 300, each once.
#   4. kcat: 4 partitions; for each, a producer bootstrapped on a node that
#      does not lead it writes 50 records with keys and two headers (-K, -H,
#      -p), and a consumer bootstrapped on another non-leader reads them
#      back: every key, value, header and partition is checked.
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0093-cluster_clients: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
BIN=${NH_ROUNDTRIP:-$(dirname "$NUTHATCH")/nh_compat_roundtrip}
[ -x "$BIN" ] || { echo "no $BIN (build first)"; exit 1; }
js=$(cd "$(dirname "$0")/js" && pwd)
NHC_ARGS=(--cluster.lease.ms 3000)

nhc_init 3 || exit 1
for i in 1 2 3; do nhc_start "$i" || exit 1; done

# 1. librdkafka.
timeout 300 "$BIN" "$NHC_BOOTSTRAP" produce || fail "librdkafka roundtrip (produce)"
for i in 1 2 3; do
    nhc_stop "$i" || fail "SIGTERM stop of node $i"
    nhc_start "$i" || exit 1
done
timeout 300 "$BIN" "$NHC_BOOTSTRAP" verify || fail "librdkafka roundtrip (verify after restarts)"

# 2. kafkajs.
if command -v node >/dev/null && [ -d "$js/node_modules/kafkajs" ]; then
    (cd "$js" && timeout 120 node - "$NHC_BOOTSTRAP") <<'JS' || fail "kafkajs"
const { Kafka, logLevel } = require('kafkajs');
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const kafka = new Kafka({ clientId: 'nh-cluster', brokers: process.argv[2].split(','),
                          logLevel: logLevel.ERROR });
(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'cl-kjs', numPartitions: 4 }] });
  const md = await admin.fetchTopicMetadata({ topics: ['cl-kjs'] });
  const leaders = new Set(md.topics[0].partitions.map((p) => p.leader));
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const want = [];
  for (let i = 0; i < 100; i++) want.push('j-' + i);
  for (let i = 0; i < 100; i += 10)
    await producer.send({ topic: 'cl-kjs', acks: -1,
                          messages: want.slice(i, i + 10).map((v) => ({ value: v })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: 'cl-kjs-g' });
  await consumer.connect();
  await consumer.subscribe({ topic: 'cl-kjs', fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('read ' + got.length + ' of 100')), 60000);
    consumer.run({ eachMessage: async ({ message }) => {
      got.push(message.value.toString());
      if (got.length >= 100) { clearTimeout(timer); resolve(); }
    } });
  });
  await consumer.disconnect();
  if (JSON.stringify([...got].sort()) !== JSON.stringify([...want].sort()))
    throw new Error('read back ' + got.length + ' records, ' + new Set(got).size + ' distinct');
  console.log('kafkajs: 100 records through leaders ' + [...leaders].sort().join(','));
})().catch((e) => { console.error('kafkajs:', e); process.exit(1); });
JS
else
    echo "kafkajs missing: part 2 skipped"
fi

# 3. The Python clients.
timeout 180 /usr/bin/python3 - "$NHC_BOOTSTRAP" <<'PY' || fail "confluent-kafka-python / kafka-python"
import sys, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
import kafka

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for t in ("cl-confluent", "cl-kafkapython"):
    admin.create_topics([NewTopic(t, 6, 1)])[t].result(30)
time.sleep(1)  # every node has seen the topics (the catalog watch)
bad = 0

def consume_confluent(topic, group, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got

want = [b"c-%d" % i for i in range(300)]
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
errs = []
for v in want:
    p.produce("cl-confluent", v, on_delivery=lambda e, m: e and errs.append(e))
p.flush(60)
got = consume_confluent("cl-confluent", "cl-g1", 300)
if errs or sorted(got) != sorted(want):
    print("confluent: %d delivery errors, %d of 300 read back, %d distinct"
          % (len(errs), len(got), len(set(got))))
    bad += 1

want = [b"k-%d" % i for i in range(300)]
kp = kafka.KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=5)
futs = [kp.send("cl-kafkapython", v) for v in want]
kp.flush(60)
fails = [f for f in futs if f.failed()]
kc = kafka.KafkaConsumer("cl-kafkapython", bootstrap_servers=bootstrap.split(","),
                         group_id="cl-g2", auto_offset_reset="earliest",
                         consumer_timeout_ms=15000)
got = [m.value for m in kc]
kc.close()
if fails or sorted(got) != sorted(want):
    print("kafka-python: %d failed sends, %d of 300 read back, %d distinct"
          % (len(fails), len(got), len(set(got))))
    bad += 1
sys.exit(1 if bad else 0)
PY

# 4. kcat.
if command -v kcat >/dev/null; then
    K=cl-kcat
    timeout 60 /usr/bin/python3 - "$NHC_BOOTSTRAP" "$K" <<'PY' || fail "kcat: cannot create $K"
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
a.create_topics([NewTopic(sys.argv[2], 4, 1)])[sys.argv[2]].result(30)
PY
    for p in 0 1 2 3; do
        leader=$(timeout 30 kcat -L -b "$NHC_BOOTSTRAP" -t "$K" 2>/dev/null |
            sed -n "s/^ *partition $p, leader \([0-9]*\),.*/\1/p")
        [ -n "$leader" ] || { fail "kcat: no leader for $K/$p"; continue; }
        others=()
        for i in 1 2 3; do [ "$i" = "$leader" ] || others+=("$i"); done
        pb=127.0.0.1:${NHC_PORT[${others[0]}]} cb=127.0.0.1:${NHC_PORT[${others[1]}]}
        for i in $(seq 1 50); do echo "key-$p-$i:value-$p-$i"; done |
            timeout 60 kcat -P -b "$pb" -t "$K" -p "$p" -K: -H "h1=one-$p" -H "h2=two" \
                -X enable.idempotence=true 2>"$NH_DIR/kcat4.p" ||
            fail "kcat produce to $K/$p through node ${others[0]}: $(cat "$NH_DIR/kcat4.p")"
        timeout 60 kcat -C -b "$cb" -t "$K" -p "$p" -o beginning -c 50 -e -q \
            -f '%p|%k|%s|%h\n' >"$NH_DIR/kcat4.out" 2>"$NH_DIR/kcat4.c"
        expect=$(for i in $(seq 1 50); do echo "$p|key-$p-$i|value-$p-$i|h1=one-$p,h2=two"; done)
        if [ "$(cat "$NH_DIR/kcat4.out")" != "$expect" ]; then
            fail "kcat $K/$p (leader $leader) read through node ${others[1]}: $(wc -l <"$NH_DIR/kcat4.out") lines, first differences: $(diff <(echo "$expect") "$NH_DIR/kcat4.out" | head -4) $(cat "$NH_DIR/kcat4.c")"
        else
            echo "kcat: $K/$p (leader $leader): 50 keyed records with headers, produced through node ${others[0]}, read back through node ${others[1]}"
        fi
    done
else
    echo "kcat missing: part 4 skipped"
fi

[ "$failures" -eq 0 ] || exit 1
echo "0093-cluster_clients: ok"
