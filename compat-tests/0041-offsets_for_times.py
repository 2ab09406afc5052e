#!/usr/bin/python3
"""0041-offsets_for_times: ListOffsets by timestamp at record granularity
with every codec (none, gzip, snappy, lz4, zstd), through librdkafka's
offsets_for_times (confluent-kafka-python 1.7.0).

For each codec a producer with linger sends RECORDS records with distinct,
increasing timestamps (TS_STEP ms apart) to one partition, so that batches
hold many records; then every record's own timestamp must find exactly that
record, a timestamp between two records the later one, one past the last
record -1 (the end), and one before the first the first.  Batches with many
records are checked to exist (a batch-granularity answer would fail).  The
same again after a restart, when the batches come from the object store.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0041: confluent_kafka not installed: skipped")
    sys.exit(77)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RECORDS = 300
TS_STEP = 2
TS0 = 1600000000000
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def base_ts(ci):
    return TS0 + ci * 10000000


def produce_all(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    fs = admin.create_topics([NewTopic("oft-" + c, 1, 1) for c in CODECS])
    for f in fs.values():
        f.result(15)
    for ci, codec in enumerate(CODECS):
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 200,
                      "batch.num.messages": 100000, "enable.idempotence": False})
        errs = []
        for i in range(RECORDS):
            p.produce("oft-" + codec, value=b"%s-%d" % (codec.encode(), i) * 3, partition=0,
                      timestamp=base_ts(ci) + TS_STEP * i,
                      on_delivery=lambda err, msg: err and errs.append(err))
        p.flush(30)
        check(not errs, "%s: delivery errors %s" % (codec, errs[:3]))


def check_times(bs, when):
    c = Consumer({"bootstrap.servers": bs, "group.id": "oft", "enable.auto.commit": False})
    for ci, codec in enumerate(CODECS):
        topic = "oft-" + codec
        t0 = base_ts(ci)
        queries = [(t0 + TS_STEP * i, i) for i in range(RECORDS)]
        queries += [(t0 + TS_STEP * i + 1, i + 1) for i in range(RECORDS - 1)]  # between
        queries += [(t0 - 5000, 0), (t0 + TS_STEP * (RECORDS - 1) + 1, -1)]
        wrong = []
        for start in range(0, len(queries), 100):
            chunk = queries[start:start + 100]
            # one partition per request: ask for each timestamp in turn
            for ts, want in chunk:
                got = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)[0]
                if got.error or got.offset != want:
                    wrong.append((ts - t0, want, got.offset, got.error))
        check(not wrong, "%s %s: %d wrong answers, first %s" % (when, codec, len(wrong),
                                                                wrong[:3]))
    c.close()


def check_batches(srv):
    """Many records per stored batch, for every codec (nuthatch-dump)."""
    dump = os.path.join(os.path.dirname(srv.binary), "nuthatch-dump")
    out = subprocess.run([dump, "--json"] + srv.object_files(), capture_output=True, text=True)
    most = {}
    for line in out.stdout.splitlines():
        b = json.loads(line)
        if b.get("type") == "batch":
            most[b["codec"]] = max(most.get(b["codec"], 0), b["record_count"])
    print("0041: most records in one stored batch, by codec: %s" % most)
    check(len(most) == len(CODECS) and min(most.values()) >= 50,
          "every codec stored batches of >= 50 records: %s" % most)


def main():
    srv = NuthatchServer()
    with srv:
        produce_all(srv.bootstrap)
        check_times(srv.bootstrap, "live")
        check(srv.stop() == 0, "clean stop")
        check_batches(srv)
        srv.start()
        check_times(srv.bootstrap, "after restart")
        check(srv.stop() == 0, "clean stop after restart")
    if failures:
        print("0041-offsets_for_times: %d failures" % len(failures))
        return 1
    print("0041-offsets_for_times: ok (%d records x %d codecs, each timestamp)"
          % (RECORDS, len(CODECS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
