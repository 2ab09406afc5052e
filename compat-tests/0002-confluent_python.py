#!/usr/bin/python3
"""0002-confluent_python: confluent-kafka-python (librdkafka) against one
nuthatch -- admin create/describe/delete, produce with delivery reports,
consume with assign(), committed offsets without a group join, and
list offsets (earliest, latest, by timestamp)."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
except ImportError:
    print("0002: confluent_kafka not installed: skipped")
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def admin_checks(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    fs = admin.create_topics([NewTopic("py-admin", 3, 1, config={"retention.ms": "3600000"}),
                              NewTopic("py-bad", 0, 1)], operation_timeout=10)
    fs["py-admin"].result(10)
    try:
        fs["py-bad"].result(10)
        check(False, "0 partitions accepted")
    except KafkaException as e:
        check(e.args[0].name() == "INVALID_PARTITIONS", "0 partitions: %s" % e)
    try:
        admin.create_topics([NewTopic("py-admin", 1, 1)])["py-admin"].result(10)
        check(False, "duplicate topic accepted")
    except KafkaException as e:
        check(e.args[0].name() == "TOPIC_ALREADY_EXISTS", "duplicate: %s" % e)
    md = admin.list_topics(timeout=10)
    check("py-admin" in md.topics and len(md.topics["py-admin"].partitions) == 3,
          "py-admin with 3 partitions in metadata")
    res = ConfigResource(ConfigResource.Type.TOPIC, "py-admin")
    cfgs = admin.describe_configs([res])[res].result(10)
    check(cfgs["retention.ms"].value == "3600000" and not cfgs["retention.ms"].is_default,
          "retention.ms override: %s" % cfgs.get("retention.ms"))
    check(cfgs["cleanup.policy"].value == "delete" and cfgs["cleanup.policy"].is_default,
          "cleanup.policy default")
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    bcfgs = admin.describe_configs([broker])[broker].result(10)
    check(bcfgs["num.partitions"].value == "2", "broker num.partitions")
    p = Producer({"bootstrap.servers": bs})
    for i in range(5):
        p.produce("py-admin", value=b"old-%d" % i, partition=0)
    p.flush(30)
    admin.delete_topics(["py-admin"], operation_timeout=10)["py-admin"].result(10)
    time.sleep(0.5)
    check("py-admin" not in admin.list_topics(timeout=10).topics, "py-admin deleted")
    # Re-created, the topic starts empty at offset 0: the old records are gone.
    admin.create_topics([NewTopic("py-admin", 1, 1)], operation_timeout=10)["py-admin"].result(10)
    delivered = []
    p.produce("py-admin", value=b"new", partition=0,
              on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    p.flush(30)
    check(delivered == [(None, 0)], "re-created topic's first record at offset 0: %s" % delivered)
    c = Consumer({"bootstrap.servers": bs, "group.id": "py-recreate"})
    lo, hi = c.get_watermark_offsets(TopicPartition("py-admin", 0), timeout=10)
    check((lo, hi) == (0, 1), "re-created topic watermarks %s" % ((lo, hi),))
    c.assign([TopicPartition("py-admin", 0, 0)])
    m = c.poll(10)
    check(m is not None and m.error() is None and m.value() == b"new" and m.offset() == 0,
          "re-created topic holds only the new record")
    c.close()


def produce_consume(bs):
    delivered = []
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "compression.type": "lz4"})
    t0 = int(time.time() * 1000)
    for i in range(500):
        p.produce("py-rt", key=b"k%d" % i, value=b"v%d" % i, partition=i % 2,
                  timestamp=t0 + i, on_delivery=lambda err, msg: delivered.append((err, msg)))
    p.flush(30)
    check(len(delivered) == 500 and all(e is None for e, _ in delivered),
          "500 delivery reports without errors: %s" % [e for e, _ in delivered if e][:3])

    c = Consumer({"bootstrap.servers": bs, "group.id": "py-group",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("py-rt", 0, 0), TopicPartition("py-rt", 1, 0)])
    got = {}
    deadline = time.time() + 30
    while len(got) < 500 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        got[m.key()] = (m.value(), m.partition(), m.offset())
    check(len(got) == 500, "consumed %d of 500" % len(got))
    check(got.get(b"k7") == (b"v7", 1, 3), "k7: %s" % (got.get(b"k7"),))

    # Commit without joining a group, read it back (another consumer).
    c.commit(offsets=[TopicPartition("py-rt", 0, 42), TopicPartition("py-rt", 1, 17)],
             asynchronous=False)
    c2 = Consumer({"bootstrap.servers": bs, "group.id": "py-group"})
    committed = c2.committed([TopicPartition("py-rt", 0), TopicPartition("py-rt", 1),
                              TopicPartition("py-rt", 5)], timeout=10)
    offs = [tp.offset for tp in committed]
    check(offs[:2] == [42, 17], "committed offsets %s" % offs)
    check(committed[2].error is not None or offs[2] < 0, "unknown partition: %s" % committed[2])

    lo, hi = c.get_watermark_offsets(TopicPartition("py-rt", 0), timeout=10)
    check((lo, hi) == (0, 250), "watermarks %s" % ((lo, hi),))
    tps = c.offsets_for_times([TopicPartition("py-rt", 0, t0 + 100)], timeout=10)
    check(0 <= tps[0].offset <= 50, "offset for time: %s" % tps[0])
    c.close()
    c2.close()


def main():
    with NuthatchServer(settings={"num.partitions": 2}) as srv:
        admin_checks(srv.bootstrap)
        produce_consume(srv.bootstrap)
        status = srv.stop()
        check(status == 0, "exit status %s after SIGTERM" % status)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-3000:], file=sys.stderr)
    if failures:
        print("0002-confluent_python: %d failure(s)" % len(failures))
        return 1
    print("0002-confluent_python: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
