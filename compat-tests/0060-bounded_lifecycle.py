#!/usr/bin/python3
"""0060-bounded_lifecycle: months of traffic in minutes -- metadata and bytes stay bounded.

confluent-kafka-python produces one ~230-byte record to each of 16
partitions every 50 ms (so the gateway flushes about 20 times a second) for
NH_LIFECYCLE_SECONDS (default 180; the long variant 600), with retention
20 s checked every 2 s, folding every 500 ms, GC every 3 s with a 5 s grace,
log.index.max.keys 64 and etcd's history compacted every 10 s.  Every 10 s
it samples, without the gateway: the manifests not yet folded, the index
keys of each partition (SQLite or etcd), the bytes of the objects in the
bucket (the directory or s3rver's files) and, on S3 + etcd, etcd's database
size (/v3/maintenance/status).  After the first 60 s (a retention window and
a grace to reach steady state) it checks that the index keys per partition
stay at most 64 + 62 + 64, the manifests at most 200, the bucket's bytes in
the last third at most 2 x the bytes of the middle third + 2 MiB, and
etcd's database size at the end at most 2 x its size at 60 s + 16 MiB.
Then the gateway restarts (from the index keys) with retention checks far
apart, and every partition's log start has advanced, and every acknowledged
record at or above it reads back with its value.  The samples are printed.
"""

import os
import sys
import time
import json
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0060: confluent_kafka not installed: skipped")
    sys.exit(77)

SECONDS = int(os.environ.get("NH_LIFECYCLE_SECONDS", "180"))
NPARTS = 16
TOPIC = "lifecycle"
PAD = b"x" * 200
MAX_KEYS = 64
SETTINGS = {
    "log.retention.ms": "20000",
    "log.retention.check.interval.ms": "2000",
    "log.lifecycle.interval.ms": "500",
    "log.gc.interval.ms": "3000",
    "log.gc.grace.ms": "5000",
    "log.index.max.keys": str(MAX_KEYS),
    "metadata.compaction.interval.ms": "10000",
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def etcd_db_size(srv):
    if srv.backend != "s3":
        return None
    req = urllib.request.Request(srv.services.etcd_endpoint + "/v3/maintenance/status",
                                 data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(json.load(r).get("dbSize", 0))


def sample(srv, t0):
    keys = srv.meta_range(b"/nuthatch/partitions/")
    per_part = {}
    for k, _ in keys:
        parts = k.split(b"/")
        if b"chunks" in parts:
            pid = parts[3] + b"/" + parts[4]
            per_part[pid] = per_part.get(pid, 0) + 1
    manifests = len(srv.meta_range(b"/nuthatch/manifests/"))
    nbytes = 0
    for f in srv.object_files():
        try:
            nbytes += os.path.getsize(f)
        except OSError:
            pass  # deleted meanwhile
    s = {"t": round(time.time() - t0), "manifests": manifests,
         "max_keys_per_partition": max(per_part.values()) if per_part else 0,
         "bucket_bytes": nbytes, "objects": len(srv.object_files()),
         "etcd_db_size": etcd_db_size(srv)}
    print("0060 sample:", json.dumps(s), flush=True)
    return s


def main():
    srv = NuthatchServer(settings=SETTINGS)
    srv.start()
    admin = AdminClient({"bootstrap.servers": srv.bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, NPARTS, 1)]).values():
        f.result(30)
    acked = {}  # (partition, offset) -> value
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()

    prod = Producer({"bootstrap.servers": srv.bootstrap, "linger.ms": 5, "acks": "all",
                     "enable.idempotence": True})
    samples = []
    t0 = time.time()
    next_sample = t0 + 10
    seq = 0
    while time.time() - t0 < SECONDS:
        tick = time.time()
        for p in range(NPARTS):
            prod.produce(TOPIC, value=b"%d:%d:" % (p, seq) + PAD, partition=p,
                         on_delivery=on_delivery)
        seq += 1
        prod.poll(0)
        if time.time() >= next_sample:
            samples.append(sample(srv, t0))
            next_sample += 10
        left = 0.05 - (time.time() - tick)
        if left > 0:
            time.sleep(left)  # poll(timeout) returns at the first delivery
    check(prod.flush(60) == 0, "every record acknowledged or failed")
    check(not errors, "no delivery errors (%s)" % errors[:3])
    print("0060: %d records acknowledged over %d s" % (len(acked), SECONDS))

    steady = [s for s in samples if s["t"] >= 60]
    if check(len(steady) >= 3, "at least three samples after 60 s"):
        top_keys = max(s["max_keys_per_partition"] for s in steady)
        check(top_keys <= MAX_KEYS + 62 + 64, "index keys per partition bounded (%d)" % top_keys)
        top_manifests = max(s["manifests"] for s in steady)
        check(top_manifests <= 200, "manifests bounded (%d)" % top_manifests)
        third = len(steady) // 3 or 1
        mid = max(s["bucket_bytes"] for s in steady[third:2 * third] or steady[:1])
        last = max(s["bucket_bytes"] for s in steady[2 * third:])
        check(last <= 2 * mid + (2 << 20), "bucket bytes bounded (%d then %d)" % (mid, last))
        if srv.backend == "s3":
            first_db, last_db = steady[0]["etcd_db_size"], steady[-1]["etcd_db_size"]
            check(last_db <= 2 * first_db + (16 << 20),
                  "etcd database bounded (%d then %d)" % (first_db, last_db))

    # Restart from the index keys, with retention out of the way, and read.
    srv.stop()
    srv.settings["log.retention.check.interval.ms"] = "3600000"
    t = time.time()
    srv.start()
    print("0060: restart took %.2f s" % (time.time() - t))
    cons = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g0060",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    lows = {}
    highs = {}
    for p in range(NPARTS):
        lows[p], highs[p] = cons.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
        check(lows[p] > 0, "partition %d: the log start advanced (%d)" % (p, lows[p]))
    cons.assign([TopicPartition(TOPIC, p, lows[p]) for p in range(NPARTS)])
    got = {}
    deadline = time.time() + 120
    while time.time() < deadline and any(
            got.get(p, lows[p] - 1) < highs[p] - 1 for p in range(NPARTS)):
        for m in cons.consume(500, 1.0):
            if m.error():
                check(False, "consume error %s" % m.error())
                continue
            if m.value() != acked.get((m.partition(), m.offset())):
                check(False, "p%d@%d: not the acknowledged value" % (m.partition(), m.offset()))
            got[m.partition()] = m.offset()
    cons.close()
    for p in range(NPARTS):
        want = sum(1 for (q, o) in acked if q == p and o >= lows[p])
        check(got.get(p, -1) == highs[p] - 1,
              "partition %d read to its end (%s of %d)" % (p, got.get(p), highs[p]))
        check(want == highs[p] - lows[p], "partition %d: %d acknowledged records at or above "
              "the log start, %d offsets" % (p, want, highs[p] - lows[p]))
    srv.stop()
    check(srv.exit_status == 0, "clean stop (%s)" % srv.exit_status)


try:
    main()
except Exception as e:  # noqa: BLE001
    failures.append(repr(e))
    raise
finally:
    if failures:
        print("0060: %d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
print("0060: ok")
