#!/usr/bin/python3
"""0061-retention_gc: short and long retention sharing objects; a deleted topic's objects.

A topic with retention.ms=2000 ("short") and one with retention.ms=-1
("long"), 4 partitions each, produced together by one confluent-kafka
producer for 10 s (every flush object holds chunks of both).  Then only
"long" is produced for 10 s more.  With retention checked every second, GC
every second and a 3 s grace: "short"'s log start reaches its high
watermark, its earliest offset (ListOffsets) follows, a consumer below it is
reset (OFFSET_OUT_OF_RANGE answered, auto.offset.reset=earliest), and no
object left in the bucket (read with nuthatch-dump, the files of the
directory or of s3rver) holds a chunk of "short" -- the chunks of "long"
were copied out of the shared objects -- while "long" reads back completely,
every acknowledged record at its offset with its value, also after a
restart.  A third topic ("gone"), produced alone and deleted: after the
grace no object holds a chunk of it.  Object counts and bytes printed.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource  # noqa: F401
except ImportError:
    print("0061: confluent_kafka not installed: skipped")
    sys.exit(77)

NUTHATCH = os.environ.get("NUTHATCH") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "nuthatch")
DUMP = os.environ.get("NUTHATCH_DUMP") or os.path.join(os.path.dirname(NUTHATCH), "nuthatch-dump")
NPARTS = 4
SETTINGS = {
    "log.retention.check.interval.ms": "1000",
    "log.lifecycle.interval.ms": "500",
    "log.gc.interval.ms": "1000",
    "log.gc.grace.ms": "3000",
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def topic_ids(srv):
    ids = {}
    for key, val in srv.meta_range(b"/nuthatch/topics/"):
        name = key[len(b"/nuthatch/topics/"):].decode()
        for line in val.decode().splitlines():
            if line.startswith("id="):
                ids[name] = line[3:]
    return ids


def chunks_by_topic(srv):
    """{topic id: number of chunks in the bucket}, and the bucket's bytes."""
    files = srv.object_files()
    out = {}
    nbytes = 0
    if not files:
        return out, 0, 0
    d = subprocess.run([DUMP, "--json"] + files, capture_output=True, text=True, timeout=120)
    for ln in d.stdout.splitlines():
        o = json.loads(ln)
        if o["type"] == "chunk":
            out[o["topic_id"]] = out.get(o["topic_id"], 0) + 1
    for f in files:
        try:
            nbytes += os.path.getsize(f)
        except OSError:
            pass
    return out, len(files), nbytes


def wait_for(what, pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.5)
    return check(False, "%s within %d s" % (what, timeout))


def read_all(srv, topic, acked):
    cons = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g-" + topic,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    highs = {p: cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
             for p in range(NPARTS)}
    cons.assign([TopicPartition(topic, p, 0) for p in range(NPARTS)])
    got = {}
    deadline = time.time() + 60
    while time.time() < deadline and any(got.get(p, -1) < highs[p] - 1 for p in range(NPARTS)):
        for m in cons.consume(500, 1.0):
            if m.error():
                continue
            check(m.value() == acked.get((m.partition(), m.offset())),
                  "%s p%d@%d: the acknowledged value" % (topic, m.partition(), m.offset()))
            got[m.partition()] = m.offset()
    cons.close()
    for p in range(NPARTS):
        n = sum(1 for (q, _) in acked if q == p)
        check(highs[p] == n and got.get(p, -1) == n - 1,
              "%s p%d: %d acknowledged, high watermark %d, read to %s"
              % (topic, p, n, highs[p], got.get(p)))


def main():
    srv = NuthatchServer(settings=SETTINGS)
    srv.start()
    admin = AdminClient({"bootstrap.servers": srv.bootstrap})
    fs = admin.create_topics([
        NewTopic("short", NPARTS, 1, config={"retention.ms": "2000"}),
        NewTopic("long", NPARTS, 1, config={"retention.ms": "-1"}),
        NewTopic("gone", 1, 1)])
    for f in fs.values():
        f.result(30)
    acked = {"short": {}, "long": {}, "gone": {}}

    def on_delivery(err, msg):
        check(err is None, "delivery: %s" % err)
        if err is None:
            acked[msg.topic()][(msg.partition(), msg.offset())] = msg.value()

    prod = Producer({"bootstrap.servers": srv.bootstrap, "linger.ms": 20, "acks": "all"})
    i = 0
    t0 = time.time()
    sampled = False
    while time.time() - t0 < 20:
        if not sampled and time.time() - t0 > 8:
            sampled = True
            ids = topic_ids(srv)
            by, nobj, nbytes = chunks_by_topic(srv)
            print("0061: while producing both: %d objects, %d bytes, chunks of short %d, long %d"
                  % (nobj, nbytes, by.get(ids["short"], 0), by.get(ids["long"], 0)))
            check(by.get(ids["short"], 0) > 0, "short's chunks in the bucket while produced")
        for p in range(NPARTS):
            if time.time() - t0 < 10:
                prod.produce("short", value=b"s%d" % i + b"." * 100, partition=p,
                             on_delivery=on_delivery)
            prod.produce("long", value=b"l%d" % i + b"." * 100, partition=p,
                         on_delivery=on_delivery)
        i += 1
        prod.poll(0)
        time.sleep(0.05)
    check(prod.flush(30) == 0, "everything acknowledged")
    ids = topic_ids(srv)
    by, nobj, nbytes = chunks_by_topic(srv)
    print("0061: after producing: %d objects, %d bytes, chunks of short %d, long %d"
          % (nobj, nbytes, by.get(ids["short"], 0), by.get(ids["long"], 0)))

    cons = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g-low"})
    wait_for("short's log start at its high watermark",
             lambda: all(cons.get_watermark_offsets(TopicPartition("short", p), timeout=10)[0] ==
                         len([1 for (q, _) in acked["short"] if q == p]) for p in range(NPARTS)),
             30)
    lows = [cons.get_watermark_offsets(TopicPartition("short", p), timeout=10)
            for p in range(NPARTS)]
    print("0061: short's watermarks", lows)
    earliest = cons.offsets_for_times([TopicPartition("short", p, 0) for p in range(NPARTS)],
                                      timeout=10)
    check(all(tp.offset in (-1, lows[tp.partition][0]) for tp in earliest),
          "offsets for time 0 are at or above the log start (%r)" % (earliest,))
    cons.close()
    # A consumer at offset 0 of short is out of range and resets to earliest.
    c2 = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g-reset",
                   "auto.offset.reset": "earliest"})
    c2.assign([TopicPartition("short", 0, 0)])
    prod.produce("short", value=b"after", partition=0, on_delivery=on_delivery)
    prod.flush(10)
    m = None
    deadline = time.time() + 20
    while time.time() < deadline:
        m = c2.poll(1.0)
        if m is not None and not m.error():
            break
    check(m is not None and not m.error() and m.value() == b"after" and m.offset() == lows[0][1],
          "a consumer below the log start resets to the earliest record (%s)"
          % ((m.offset(), m.value()) if m is not None else None,))
    c2.close()

    # The deleted topic.
    for _ in range(20):
        prod.produce("gone", value=b"g" * 100, partition=0, on_delivery=on_delivery)
    check(prod.flush(10) == 0, "gone: acknowledged")
    by, _, _ = chunks_by_topic(srv)
    check(by.get(ids["gone"], 0) > 0, "gone: in the bucket before the deletion")
    for f in admin.delete_topics(["gone"]).values():
        f.result(30)

    def short_and_gone_gone():
        b, _, _ = chunks_by_topic(srv)
        return b.get(ids["short"], 0) <= 1 and b.get(ids["gone"], 0) == 0
    wait_for("short's and gone's chunks out of the bucket", short_and_gone_gone, 60)
    # short's last record ("after") may still be there: it is inside retention for 2 s.
    time.sleep(4)
    wait_for("short's chunks out of the bucket",
             lambda: chunks_by_topic(srv)[0].get(ids["short"], 0) == 0, 30)
    by, nobj, nbytes = chunks_by_topic(srv)
    print("0061: after retention and GC: %d objects, %d bytes, chunks of short %d, long %d, "
          "gone %d" % (nobj, nbytes, by.get(ids["short"], 0), by.get(ids["long"], 0),
                       by.get(ids["gone"], 0)))
    read_all(srv, "long", acked["long"])
    srv.stop()
    check(srv.exit_status == 0, "clean stop (%s)" % srv.exit_status)
    srv.start()
    read_all(srv, "long", acked["long"])
    srv.stop()


try:
    main()
except Exception as e:  # noqa: BLE001
    import traceback
    traceback.print_exc()
    failures.append(repr(e))
finally:
    if failures:
        print("0061: %d failure(s): %s" % (len(failures), failures), file=sys.stderr)
        sys.exit(1)
print("0061: ok")
