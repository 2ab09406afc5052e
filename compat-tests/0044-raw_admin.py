#!/usr/bin/python3
"""0044-raw_admin: the admin APIs no installed client sends, hand-encoded
over a plain socket (the versions listed for them in gw_dispatch.c are the
ones exercised here), with confluent-kafka-python 1.7.0 producing the data
and reading the results back:

- DescribeCluster v0 (flexible): cluster id as Metadata reports it, this
  node as controller and only broker;
- OffsetForLeaderEpoch v0-v3: the current epoch (0) ends at the high
  watermark, an unknown higher epoch is -1/-1, current_leader_epoch above
  the leader's is UNKNOWN_LEADER_EPOCH and below it FENCED_LEADER_EPOCH;
- DeleteRecords v0 and v1: the low watermark, OFFSET_OUT_OF_RANGE above the
  high watermark, -1 for the high watermark; then Fetch v4 below the log
  start is OFFSET_OUT_OF_RANGE, at it not; watermarks and offsets by time
  follow it, also after a restart;
- ListOffsets v4-v7 (v6+ flexible): latest, earliest, by time inside a
  batch, current_leader_epoch checks, and -3 (v7, KIP-734): the first record
  with the largest timestamp, in a batch whose timestamps go back and forth;
- IncrementalAlterConfigs v0: SET, DELETE, APPEND and SUBTRACT (cleanup.policy
  only), INVALID_CONFIG for compact, an empty policy, other names, a SET
  without a value and APPEND on a non-list; INVALID_REQUEST for a broker
  and for a topic or configuration named twice; validate_only.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kafka_wire as kw  # noqa: E402
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
except ImportError:
    print("0044: confluent_kafka not installed: skipped")
    sys.exit(77)

TOPIC = "raw-admin"
LO_TOPIC = "raw-list-offsets"
LO_TS = [1600000001000, 1600000005000, 1600000003000, 1600000005000, 1600000002000]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


i8, i16, i32, i64, string, array = kw.i8, kw.i16, kw.i32, kw.i64, kw.string, kw.array
uvarint, compact_string = kw.uvarint, kw.compact_string


class Conn(kw.Conn):
    """kafka_wire's connection, answering with a Reader over the body."""

    def call(self, key, version, body):
        return kw.Reader(super().call(key, version, body, timeout=15))


# ------------------------------------------------------------------ APIs

def describe_cluster(c):
    r = c.call(60, 0, b"\x00" + b"\x00")
    out = {"throttle": r.i32(), "error": r.i16(), "message": r.compact_string(),
           "cluster_id": r.compact_string(), "controller": r.i32()}

    def broker():
        b = (r.i32(), r.compact_string(), r.i32(), r.compact_string())
        r.tags()
        return b
    out["brokers"] = r.compact_array(broker)
    out["ops"] = r.i32()
    r.tags()
    return out


def offset_for_leader_epoch(c, version, epoch, current=-1, topic=TOPIC, partition=0):
    part = i32(partition) + (i32(current) if version >= 2 else b"") + i32(epoch)
    body = (i32(-1) if version >= 3 else b"") + array([string(topic) + array([part])])
    r = c.call(23, version, body)
    if version >= 2:
        r.i32()
    topics = r.array(lambda: (r.string(), r.array(
        lambda: (r.i16(), r.i32(), r.i32() if version >= 1 else None, r.i64()))))
    err, _, ep, end = topics[0][1][0]
    return err, ep, end


def delete_records(c, version, offset, partition=0):
    body = array([string(TOPIC) + array([i32(partition) + i64(offset)])]) + i32(10000)
    r = c.call(21, version, body)
    r.i32()
    topics = r.array(lambda: (r.string(), r.array(lambda: (r.i32(), r.i64(), r.i16()))))
    _, low, err = topics[0][1][0]
    return err, low


def fetch_error(c, offset):
    part = i32(0) + i64(offset) + i32(1 << 20)
    body = i32(-1) + i32(0) + i32(0) + i32(1 << 20) + i8(0) + array([string(TOPIC) +
                                                                     array([part])])
    r = c.call(1, 4, body)
    r.i32()
    r.i32()  # one topic
    r.string()
    r.i32()  # one partition
    r.i32()
    return r.i16()


def list_offsets(c, version, ts, current=-1, topic=LO_TOPIC, partition=0):
    """ListOffsets v4-v7 (v6+ flexible): (error, timestamp, offset, leader epoch)."""
    flex = version >= 6
    part = i32(partition) + i32(current) + i64(ts) + (b"\x00" if flex else b"")
    if flex:
        topics = uvarint(2) + compact_string(topic) + uvarint(2) + part + b"\x00"
    else:
        topics = array([string(topic) + array([part])])
    body = i32(-1) + i8(0) + topics + (b"\x00" if flex else b"")
    r = c.call(2, version, body)
    r.i32()

    def partition_result():
        out = (r.i32(), r.i16(), r.i64(), r.i64(), r.i32())
        if flex:
            r.tags()
        return out

    def topic_result():
        name = r.compact_string() if flex else r.string()
        parts = r.compact_array(partition_result) if flex else r.array(partition_result)
        if flex:
            r.tags()
        return name, parts
    topics = r.compact_array(topic_result) if flex else r.array(topic_result)
    _, err, t, off, ep = topics[0][1][0]
    return err, t, off, ep


def check_list_offsets(c, when):
    """Records 0-4 of LO_TOPIC have the timestamps LO_TS."""
    for v in (4, 5, 6, 7):
        check(list_offsets(c, v, -1) == (0, -1, 5, 0), "%s ListOffsets v%d latest: %s"
              % (when, v, list_offsets(c, v, -1)))
        check(list_offsets(c, v, -2)[2] == 0, "%s ListOffsets v%d earliest" % (when, v))
        check(list_offsets(c, v, LO_TS[1] - 500)[1:3] == (LO_TS[1], 1),
              "%s ListOffsets v%d by time inside the batch: %s"
              % (when, v, list_offsets(c, v, LO_TS[1] - 500)))
        check(list_offsets(c, v, LO_TS[2] + 1, current=0)[1:3] == (LO_TS[1], 1),
              "%s ListOffsets v%d by time, current epoch 0" % (when, v))
        check(list_offsets(c, v, -1, current=3)[0] == 75,
              "%s ListOffsets v%d UNKNOWN_LEADER_EPOCH" % (when, v))
        check(list_offsets(c, v, -1, current=-4)[0] == 74,
              "%s ListOffsets v%d FENCED_LEADER_EPOCH" % (when, v))
    got = list_offsets(c, 7, -3)
    check(got == (0, max(LO_TS), LO_TS.index(max(LO_TS)), 0),
          "%s ListOffsets v7 max timestamp: %s" % (when, got))
    check(list_offsets(c, 7, -3, partition=1)[:3] == (0, -1, -1),
          "%s ListOffsets v7 max timestamp of an empty partition" % when)


def incremental(c, resources, validate_only=False):
    """resources: [(type, name, [(config, op, value)])] -> [(error, message)]"""
    body = array([i8(t) + string(n) + array([string(k) + i8(op) + string(v) for k, op, v in cfgs])
                  for t, n, cfgs in resources]) + i8(1 if validate_only else 0)
    r = c.call(44, 0, body)
    r.i32()
    return r.array(lambda: (r.i16(), r.string(), r.i8(), r.string()))


SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def configs(admin):
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(15).items()}


def watermarks(bs):
    c = Consumer({"bootstrap.servers": bs, "group.id": "raw-admin"})
    w = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
    t = c.offsets_for_times([TopicPartition(TOPIC, 0, 0)], timeout=10)[0].offset
    c.close()
    return w, t


def run(srv):
    bs = srv.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(15)
    p = Producer({"bootstrap.servers": bs, "linger.ms": 50})
    for i in range(10):
        p.produce(TOPIC, value=b"r%d" % i, partition=0, timestamp=1600000000000 + i)
    admin.create_topics([NewTopic(LO_TOPIC, 2, 1)])[LO_TOPIC].result(15)
    for i, ts in enumerate(LO_TS):  # one batch (linger): timestamps go back and forth
        p.produce(LO_TOPIC, value=b"t%d" % i, partition=0, timestamp=ts)
    p.flush(30)
    c = Conn(bs)
    check_list_offsets(c, "live")

    dc = describe_cluster(c)
    cluster_id = admin.list_topics(timeout=10).cluster_id
    check(dc["error"] == 0 and dc["cluster_id"] == cluster_id and dc["controller"] == 1
          and dc["brokers"] == [(1, "127.0.0.1", srv.port, None)],
          "DescribeCluster: %s (metadata cluster id %s)" % (dc, cluster_id))

    for v in range(4):
        err, ep, end = offset_for_leader_epoch(c, v, 0)
        check(err == 0 and end == 10 and (v == 0 or ep == 0),
              "OffsetForLeaderEpoch v%d epoch 0: %s" % (v, (err, ep, end)))
        err, ep, end = offset_for_leader_epoch(c, v, 3)
        check(err == 0 and end == -1 and (v == 0 or ep == -1),
              "OffsetForLeaderEpoch v%d epoch 3 unknown: %s" % (v, (err, ep, end)))
    check(offset_for_leader_epoch(c, 3, 0, current=1)[0] == 75, "UNKNOWN_LEADER_EPOCH")
    check(offset_for_leader_epoch(c, 2, 0, current=-7)[0] == 74, "FENCED_LEADER_EPOCH")
    check(offset_for_leader_epoch(c, 3, 0, current=0) == (0, 0, 10), "current epoch 0")
    check(offset_for_leader_epoch(c, 3, 0, topic="nope")[0] == 3, "unknown topic")
    check(offset_for_leader_epoch(c, 3, 0, partition=5)[0] == 3, "unknown partition")

    check(delete_records(c, 0, 11) == (1, -1), "DeleteRecords above the hw: OFFSET_OUT_OF_RANGE")
    check(delete_records(c, 0, 4) == (0, 4), "DeleteRecords v0 to 4")
    check(delete_records(c, 1, 2) == (0, 4), "DeleteRecords v1 below the start: no change")
    check(delete_records(c, 1, 3, partition=9) == (3, -1), "DeleteRecords unknown partition")
    check(delete_records(c, 1, -1, partition=1) == (0, 0), "DeleteRecords empty partition")
    check(fetch_error(c, 3) == 1, "Fetch below the log start: OFFSET_OUT_OF_RANGE")
    check(fetch_error(c, 4) == 0, "Fetch at the log start")
    check(watermarks(bs) == ((4, 10), 4), "watermarks and offset by time: %s"
          % (watermarks(bs),))
    check(offset_for_leader_epoch(c, 3, 0)[2] == 10, "epoch end after DeleteRecords")

    ok = incremental(c, [(2, TOPIC, [("retention.ms", SET, "1000"),
                                     ("cleanup.policy", APPEND, "delete"),
                                     ("max.message.bytes", SET, "70000")])])
    check([x[0] for x in ok] == [0], "incremental SET and APPEND: %s" % ok)
    cfg = configs(admin)
    check(cfg["retention.ms"] == "1000" and cfg["cleanup.policy"] == "delete"
          and cfg["max.message.bytes"] == "70000", "after SET/APPEND: %s" % cfg)
    for what, cfgs in (("APPEND compact", [("cleanup.policy", APPEND, "compact")]),
                       ("SUBTRACT delete", [("cleanup.policy", SUBTRACT, "delete")]),
                       ("SET compact", [("cleanup.policy", SET, "compact,delete")]),
                       ("APPEND on a long", [("retention.ms", APPEND, "5")]),
                       ("SET without value", [("retention.ms", SET, None)]),
                       ("other name", [("segment.bytes", SET, "100000")]),
                       ("other name DELETE", [("min.insync.replicas", DELETE, None)]),
                       ("bad number", [("retention.bytes", SET, "-9")])):
        r = incremental(c, [(2, TOPIC, cfgs)])
        check(r[0][0] == 40 and r[0][1], "%s: INVALID_CONFIG: %s" % (what, r))
    r = incremental(c, [(2, TOPIC, [("retention.ms", SET, "5"), ("retention.ms", DELETE, None)])])
    check(r[0][0] == 42, "a configuration named twice: %s" % r)
    r = incremental(c, [(2, TOPIC, [("retention.ms", SET, "5")]),
                        (2, TOPIC, [("retention.bytes", SET, "5")])])
    check([x[0] for x in r] == [42, 42], "a topic named twice: %s" % r)
    r = incremental(c, [(4, "1", [("log.retention.ms", SET, "5")]),
                        (2, "nope", [("retention.ms", SET, "5")])])
    check([x[0] for x in r] == [42, 3], "broker and unknown topic: %s" % r)
    # The broker's dynamic Kerberos login settings: SET and DELETE only.
    kb, kj = "sasl.kerberos.min.time.before.relogin", "sasl.kerberos.ticket.renew.jitter"
    for what, res in (("APPEND", (4, "1", [(kb, APPEND, "5")])),
                      ("a bad value", (4, "1", [(kj, SET, "lots")])),
                      ("another broker", (4, "7", [(kb, SET, "5")])),
                      ("the cluster default", (4, "", [(kb, SET, "5")]))):
        r = incremental(c, [res])
        check(r[0][0] == 42 and r[0][1], "broker %s: INVALID_REQUEST: %s" % (what, r))
    r = incremental(c, [(4, "1", [(kb, SET, "1000")]), (4, "1", [(kj, SET, "0.2")])])
    check([x[0] for x in r] == [42, 42], "a broker named twice: %s" % r)
    check(incremental(c, [(4, "1", [(kb, SET, "1000"), (kj, SET, "0.2")])])[0][0] == 0,
          "broker SET")
    check(incremental(c, [(4, "1", [(kb, DELETE, None)])])[0][0] == 0, "broker DELETE")
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    b = admin.describe_configs([res])[res].result(15)
    check(b[kb].value == "60000" and b[kj].value == "0.2", "broker after SET and DELETE: %s %s"
          % (b[kb].value, b[kj].value))
    r = incremental(c, [(2, TOPIC, [("retention.ms", DELETE, None)])], validate_only=True)
    check(r[0][0] == 0 and configs(admin)["retention.ms"] == "1000", "validate_only DELETE")
    r = incremental(c, [(2, TOPIC, [("retention.ms", DELETE, None),
                                    ("cleanup.policy", SUBTRACT, "compact")])])
    cfg = configs(admin)
    check(r[0][0] == 0 and cfg["retention.ms"] == "604800000" and cfg["cleanup.policy"] == "delete",
          "DELETE back to the default, SUBTRACT of an absent item: %s %s" % (r, cfg))
    check(delete_records(c, 1, -1) == (0, 10), "DeleteRecords -1: the high watermark")


def after_restart(srv):
    bs = srv.bootstrap
    c = Conn(bs)
    check_list_offsets(c, "after restart")
    check(watermarks(bs) == ((10, 10), -1), "log start after restart: %s" % (watermarks(bs),))
    check(fetch_error(c, 9) == 1, "Fetch below the log start after restart")
    check(configs(AdminClient({"bootstrap.servers": bs}))["max.message.bytes"] == "70000",
          "incremental change after restart")
    check(describe_cluster(c)["error"] == 0, "DescribeCluster after restart")


def main():
    srv = NuthatchServer()
    with srv:
        run(srv)
        check(srv.stop() == 0, "clean stop")
        srv.start()
        after_restart(srv)
        check(srv.stop() == 0, "clean stop after restart")
    if failures:
        print("0044-raw_admin: %d failures" % len(failures))
        return 1
    print("0044-raw_admin: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
