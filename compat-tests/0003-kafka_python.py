#!/usr/bin/python3
"""0003-kafka_python: kafka-python 2.0.2 against one nuthatch.  It sends
exactly Metadata v0 (an empty topic list meaning "all topics"), Fetch v4,
ListOffsets v1, OffsetCommit v2 and OffsetFetch v1: produce, consume with
assign(), commit and read back without a group join."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata
except ImportError:
    print("0003: kafka-python not installed: skipped")
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(bs):
    p = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=5)
    futs = [p.send("kp-rt", key=b"k%d" % i, value=b"v%d" % i, partition=0) for i in range(100)]
    p.flush(30)
    offs = [f.get(timeout=10).offset for f in futs]
    check(offs == list(range(100)), "producer offsets %s..." % offs[:5])
    p.close()

    c = KafkaConsumer(bootstrap_servers=bs, group_id="kp-group", enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    tp = TopicPartition("kp-rt", 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [m.value for m in c]
    check(got == [b"v%d" % i for i in range(100)], "consumed %d of 100" % len(got))
    check(c.end_offsets([tp])[tp] == 100, "end offset")
    check("kp-rt" in c.topics(), "topics() lists kp-rt")
    c.commit({tp: OffsetAndMetadata(60, "meta")})
    check(c.committed(tp) == 60, "committed %s" % c.committed(tp))
    c.close()


def main():
    with NuthatchServer() as srv:
        run(srv.bootstrap)
        status = srv.stop()
        check(status == 0, "exit status %s after SIGTERM" % status)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-3000:], file=sys.stderr)
    if failures:
        print("0003-kafka_python: %d failure(s)" % len(failures))
        return 1
    print("0003-kafka_python: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
