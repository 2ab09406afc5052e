#!/usr/bin/python3
"""0013-many_partitions: a 1,000-partition topic, and flushes that span it.

confluent-kafka-python's admin client creates a topic of 1,000 partitions
(one CreateTopics request) and finds them all in the metadata.  Then two
rounds of one record per partition, each record its own produce call:
  - kafka-python with linger: its producer drains every partition's batch
    for the broker into one Produce request, so one flush carries all 1,000
    partitions -- at most 3 new flush objects, with 1,000 chunks between
    them, each partition once (read with nuthatch-dump);
  - confluent-kafka with linger: librdkafka (2.0.2 here) sends one
    partition per Produce request, so the flushes hold what the gateway
    has read of them at once; every record is acknowledged, the flush count
    is printed.
Then every partition is read back (offsets 0 and 1, the values produced),
its watermarks are 0 and 2, and again after a restart.  With NH_BACKEND=s3
the objects are the S3 server's files and the data directory must not exist.

NUTHATCH_DUMP names the dump tool (default: nuthatch-dump next to NUTHATCH).
"""

import collections
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0013: confluent_kafka not installed: skipped")
    sys.exit(77)
try:
    from kafka import KafkaProducer
except ImportError:
    KafkaProducer = None

N = 1000
TOPIC = "many-parts"
MAX_FLUSHES = 3  # for the kafka-python round: "a few" objects for all partitions
NUTHATCH = os.environ.get("NUTHATCH") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "nuthatch")
DUMP = os.environ.get("NUTHATCH_DUMP") or os.path.join(os.path.dirname(NUTHATCH), "nuthatch-dump")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def value(rnd, p):
    return b"r%d-p%d" % (rnd, p)


def chunks_of(files):
    """{path: [partition of each chunk]} of flush objects, read by nuthatch-dump."""
    if not files:
        return {}
    d = subprocess.run([DUMP, "--json"] + sorted(files), capture_output=True, text=True,
                       timeout=120)
    if not check(d.returncode == 0, "nuthatch-dump exited %d: %s" % (d.returncode, d.stderr)):
        return {}
    out = collections.defaultdict(list)
    for ln in d.stdout.splitlines():
        j = json.loads(ln)
        if j["type"] == "chunk":
            out[j["path"]].append(j["partition"])
    return out


def create_topic(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    t0 = time.monotonic()
    fs = admin.create_topics([NewTopic(TOPIC, N, 1)], operation_timeout=30)
    fs[TOPIC].result(60)
    md = admin.list_topics(TOPIC, timeout=30)
    parts = md.topics[TOPIC].partitions
    print("0013: CreateTopics of %d partitions and its metadata in %.2f s"
          % (N, time.monotonic() - t0))
    check(sorted(parts) == list(range(N)), "metadata lists %d partitions, not %d"
          % (len(parts), N))
    check(all(p.leader == 1 and p.error is None for p in parts.values()),
          "every partition led by broker 1 without error")


def round_kafka_python(srv, rnd):
    """One record per partition through kafka-python: one request, one flush."""
    before = set(srv.object_files())
    p = KafkaProducer(bootstrap_servers=srv.bootstrap, acks="all", linger_ms=500)
    futs = [p.send(TOPIC, value=value(rnd, i), partition=i) for i in range(N)]
    offs = [f.get(timeout=60).offset for f in futs]  # no flush(): linger applies
    p.close(10)
    check(offs == [rnd] * N, "kafka-python round: offsets %s, not all %d"
          % (sorted(set(offs))[:5], rnd))
    new = set(srv.object_files()) - before
    chunks = chunks_of(new)
    counts = sorted((len(c) for c in chunks.values()), reverse=True)
    print("0013: kafka-python, %d partitions in one request: %d flush object(s), chunks %s"
          % (N, len(new), counts))
    check(1 <= len(new) <= MAX_FLUSHES, "%d flush objects for one request of %d partitions "
          "(at most %d expected)" % (len(new), N, MAX_FLUSHES))
    parts = sorted(p for c in chunks.values() for p in c)
    check(parts == list(range(N)), "the new objects hold %d chunks, not one per partition"
          % len(parts))


def round_librdkafka(srv, rnd):
    """One record per partition through librdkafka with linger."""
    before = set(srv.object_files())
    acked = {}

    def report(err, msg):
        if check(err is None, "delivery to partition %s: %s" % (msg.partition(), err)):
            acked[msg.partition()] = msg.offset()

    p = Producer({"bootstrap.servers": srv.bootstrap, "acks": "all", "linger.ms": 500,
                  "queue.buffering.max.messages": 10 * N})
    for i in range(N):
        p.produce(TOPIC, value=value(rnd, i), partition=i, on_delivery=report)
    deadline = time.monotonic() + 120
    while len(acked) < N and time.monotonic() < deadline:
        p.poll(0.1)  # no flush(): linger applies
    check(p.flush(30) == 0, "librdkafka round: records left unsent")
    check(acked == {i: rnd for i in range(N)}, "librdkafka round: %d of %d acknowledged at "
          "offset %d" % (sum(1 for o in acked.values() if o == rnd), N, rnd))
    new = set(srv.object_files()) - before
    chunks = chunks_of(new)
    parts = sorted(p for c in chunks.values() for p in c)
    print("0013: librdkafka, one partition per request: %d flush objects for %d partitions "
          "(largest %d chunks)" % (len(new), N, max((len(c) for c in chunks.values()),
                                                    default=0)))
    check(parts == list(range(N)), "the new objects hold %d chunks, not one per partition"
          % len(parts))


def read_back(bs, rounds):
    c = Consumer({"bootstrap.servers": bs, "group.id": "many-parts-reader",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(TOPIC, i, OFFSET_BEGINNING) for i in range(N)])
    got = collections.defaultdict(list)
    want = N * len(rounds)
    n = 0
    deadline = time.monotonic() + 120
    while n < want and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                check(False, "consume: %s" % m.error())
                continue
            got[m.partition()].append((m.offset(), m.value()))
            n += 1
    bad = [i for i in range(N)
           if got.get(i) != [(k, value(r, i)) for k, r in enumerate(rounds)]]
    check(not bad, "%d partitions read back wrong, e.g. %s: %s"
          % (len(bad), bad[:3], [got.get(i) for i in bad[:3]]))
    c.close()
    print("0013: read back %d records from %d partitions" % (n, len(got)))


def watermarks(bs, label, high):
    c = Consumer({"bootstrap.servers": bs, "group.id": "many-parts-wm"})
    wrong = []
    for i in range(N):
        wm = c.get_watermark_offsets(TopicPartition(TOPIC, i), timeout=10)
        if wm != (0, high):
            wrong.append((i, wm))
    c.close()
    check(not wrong, "%s: %d partitions with watermarks other than (0, %d): %s"
          % (label, len(wrong), high, wrong[:5]))


def main():
    if not os.access(DUMP, os.X_OK):
        print("0013: no nuthatch-dump at %s (build first, or set NUTHATCH_DUMP)" % DUMP)
        return 1
    srv = NuthatchServer()
    try:
        srv.start()
        create_topic(srv.bootstrap)
        rounds = []
        if KafkaProducer is not None:
            round_kafka_python(srv, len(rounds))
            rounds.append(len(rounds))
        else:
            print("0013: kafka-python not installed: no single-request round")
        round_librdkafka(srv, len(rounds))
        rounds.append(len(rounds))
        read_back(srv.bootstrap, rounds)
        watermarks(srv.bootstrap, "before the restart", len(rounds))
        if srv.backend == "s3":
            check(not os.path.exists(srv.data_dir),
                  "NH_BACKEND=s3: the data directory %s exists" % srv.data_dir)
        check(srv.stop() == 0, "exit status %s after SIGTERM" % srv.exit_status)
        srv.start()
        watermarks(srv.bootstrap, "after a restart", len(rounds))
        check(srv.stop() == 0, "exit status %s after the second SIGTERM" % srv.exit_status)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-3000:], file=sys.stderr)
    finally:
        srv.cleanup()
    if failures:
        print("0013-many_partitions: %d failure(s)" % len(failures))
        return 1
    print("0013-many_partitions: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
