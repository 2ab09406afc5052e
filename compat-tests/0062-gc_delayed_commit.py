#!/usr/bin/python3
"""0062-gc_delayed_commit: GC racing commits held back by a frozen etcd (S3 + etcd only).

The gateway runs GC every second with a 2 s grace, and folding and merging
(log.index.max.keys 16) every 200 ms, while an idempotent confluent-kafka
producer writes to 4 partitions for 30 s.  Twice, etcd is frozen (SIGSTOP)
for 6 s -- three times the grace: uploads go on, their commits wait behind
the one in flight, and GC passes list the bucket meanwhile, seeing those
uploads unreferenced for longer than the grace; a pass judges only after
its own metadata read, which etcd answers after the commit in flight, so by
then the held-back flushes are committing or committed and nothing they
name is deleted.  (A flush still held when GC judges is failed instead:
storage/tests/test_log_life holds one.)  Afterwards every acknowledged
record reads back exactly once, at contiguous offsets, also after a
restart; every object in the bucket older than the grace plus two GC
intervals is named by an index key or a manifest (no orphan survives), and
every object they name exists.
"""

import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

if os.environ.get("NH_BACKEND", "embedded") != "s3":
    print("0062: S3 + etcd only: skipped")
    sys.exit(77)
try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0062: confluent_kafka not installed: skipped")
    sys.exit(77)

NPARTS = 4
TOPIC = "gc-race"
GRACE_S = 2
SETTINGS = {
    "log.lifecycle.interval.ms": "200",
    "log.gc.interval.ms": "1000",
    "log.gc.grace.ms": str(GRACE_S * 1000),
    "log.index.max.keys": "16",
    "metadata.etcd.request.timeout.ms": "30000",
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def manifest_object(val):
    """The object key a manifest (or index key value) names."""
    (klen,) = struct.unpack(">h", val[21:23])
    return val[23:23 + klen].decode()


def referenced(srv):
    keys = set()
    for k, v in srv.meta_range(b"/nuthatch/partitions/"):
        if b"/chunks/" in k:
            keys.add(manifest_object(v))
    for _, v in srv.meta_range(b"/nuthatch/manifests/"):
        keys.add(manifest_object(v))
    return keys


def bucket_objects(srv):
    """{object key without the prefix: mtime} of the S3 server's files."""
    root = os.path.join(srv.services.s3_dir, srv.services.bucket)
    out = {}
    for path in srv.object_files():
        rel = os.path.relpath(path, root)[:-len("._S3rver_object")]
        rel = rel[rel.index("objects/"):]
        out[rel] = os.path.getmtime(path)
    return out


def read_all(srv, acked):
    cons = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g0062",
                     "enable.auto.commit": False})
    highs = {p: cons.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
             for p in range(NPARTS)}
    cons.assign([TopicPartition(TOPIC, p, 0) for p in range(NPARTS)])
    seen = {}
    deadline = time.time() + 60
    while time.time() < deadline and sum(len(v) for v in seen.values()) < sum(highs.values()):
        for m in cons.consume(1000, 1.0):
            if m.error():
                continue
            seen.setdefault(m.partition(), []).append((m.offset(), m.value()))
    cons.close()
    for p in range(NPARTS):
        got = seen.get(p, [])
        check([o for o, _ in got] == list(range(highs[p])),
              "p%d: offsets 0..%d contiguous (%d read)" % (p, highs[p] - 1, len(got)))
        want = sorted((o, v) for (q, o), v in acked.items() if q == p)
        check(got == want, "p%d: the %d acknowledged records, once each, at their offsets"
              % (p, len(want)))


def main():
    srv = NuthatchServer(settings=SETTINGS)
    srv.start()
    admin = AdminClient({"bootstrap.servers": srv.bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, NPARTS, 1)]).values():
        f.result(30)
    acked = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()

    prod = Producer({"bootstrap.servers": srv.bootstrap, "enable.idempotence": True,
                     "acks": "all", "linger.ms": 10, "message.timeout.ms": 120000})
    etcd = srv.services.etcd
    t0 = time.time()
    i = 0
    frozen_at = None
    freezes = 0
    while time.time() - t0 < 30:
        for p in range(NPARTS):
            prod.produce(TOPIC, value=b"%d-%d" % (p, i), partition=p, on_delivery=on_delivery)
        i += 1
        prod.poll(0)
        el = time.time() - t0
        if frozen_at is None and freezes < 2 and el > 5 + 12 * freezes:
            os.kill(etcd.pid, signal.SIGSTOP)
            frozen_at = time.time()
            print("0062: etcd frozen at %.1f s" % el)
        elif frozen_at is not None and time.time() - frozen_at > 6:
            os.kill(etcd.pid, signal.SIGCONT)
            frozen_at = None
            freezes += 1
            print("0062: etcd resumed at %.1f s" % el)
        time.sleep(0.02)
    if frozen_at is not None:
        os.kill(etcd.pid, signal.SIGCONT)
    check(prod.flush(120) == 0, "every record acknowledged")
    check(not errors, "no delivery errors (%s)" % errors[:3])
    print("0062: %d records acknowledged" % len(acked))
    read_all(srv, acked)
    # Let GC see everything older than the grace twice.
    time.sleep(GRACE_S + 3)
    objs = bucket_objects(srv)
    refs = referenced(srv)
    now = time.time()
    old = [k for k, mt in objs.items() if now - mt > GRACE_S + 2]
    orphans = [k for k in old if k not in refs]
    missing = [k for k in refs if k not in objs]
    print("0062: %d objects in the bucket, %d referenced, %d older than the grace + 2 s"
          % (len(objs), len(refs), len(old)))
    check(not orphans, "no orphan older than the grace (%s)" % orphans[:5])
    check(not missing, "every referenced object exists (%s)" % missing[:5])
    srv.stop()
    check(srv.exit_status == 0, "clean stop (%s)" % srv.exit_status)
    srv.start()
    read_all(srv, acked)
    srv.stop()


try:
    main()
except Exception as e:  # noqa: BLE001
    import traceback
    traceback.print_exc()
    failures.append(repr(e))
finally:
    if failures:
        print("0062: %d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
print("0062: ok")
