#!/usr/bin/python3
"""0040-confluent_admin: confluent-kafka-python 1.7.0 (librdkafka 2.0.2)
admin against one nuthatch -- create_topics refusing a line break in a
config value (INVALID_CONFIG), create_partitions (increase only,
validate_only, new partitions produce- and fetch-able at once and after a
restart), describe_configs with sources, defaults, read-only flags and
synonyms, alter_configs (retention.ms, retention.bytes, max.message.bytes,
cleanup.policy=delete; INVALID_CONFIG for other names, compact and bad
values; validate_only; INVALID_REQUEST for a broker's static keys), the
broker's dynamic Kerberos login settings (stored, described back with
their source, after a restart too), and max.message.bytes
refusing a produce at once (MSG_SIZE_TOO_LARGE) until raised again."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource, NewPartitions,
                                       NewTopic)
except ImportError:
    print("0040: confluent_kafka not installed: skipped")
    sys.exit(77)

TOPIC = "cp-admin"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def error_name(fut):
    try:
        fut.result(15)
        return "NO_ERROR"
    except KafkaException as e:
        return e.args[0].name()


def produce(bs, partition, value, topic=TOPIC):
    """Produce one record; the delivery error name or the offset."""
    p = Producer({"bootstrap.servers": bs, "message.max.bytes": 10000000,
                  "message.send.max.retries": 0})
    out = []
    p.produce(topic, value=value, partition=partition,
              on_delivery=lambda err, msg: out.append(err.name() if err else msg.offset()))
    p.flush(30)
    return out[0] if out else "NO_REPORT"


def consume(bs, partition, offset, n):
    c = Consumer({"bootstrap.servers": bs, "group.id": "cp-admin-reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, partition, offset)])
    got = []
    for _ in range(100):
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.value())
            if len(got) >= n:
                break
    c.close()
    return got


def describe(admin, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return admin.describe_configs([res])[res].result(15)


def alter(admin, configs, validate_only=False, rtype=ConfigResource.Type.TOPIC, name=TOPIC):
    res = ConfigResource(rtype, name, set_config=configs)
    return error_name(admin.alter_configs([res], validate_only=validate_only)[res])


def partitions(admin):
    return len(admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)


def run(srv):
    bs = srv.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(15)
    # A line break cannot smuggle a line into the stored topic.
    bad = admin.create_topics([NewTopic("cp-inject", 1, 1,
                                        config={"retention.ms": "1\npartitions=7"})])
    check(error_name(bad["cp-inject"]) == "INVALID_CONFIG", "line break in a config value")

    # CreatePartitions: increase only, validate_only changes nothing.
    check(error_name(admin.create_partitions([NewPartitions(TOPIC, 2)])[TOPIC])
          == "INVALID_PARTITIONS", "same partition count refused")
    check(error_name(admin.create_partitions([NewPartitions(TOPIC, 1)])[TOPIC])
          == "INVALID_PARTITIONS", "fewer partitions refused")
    check(error_name(admin.create_partitions([NewPartitions("cp-nope", 3)])["cp-nope"])
          == "UNKNOWN_TOPIC_OR_PART", "unknown topic")
    check(error_name(admin.create_partitions([NewPartitions(TOPIC, 9)],
                                             validate_only=True)[TOPIC]) == "NO_ERROR",
          "validate_only accepted")
    check(partitions(admin) == 2, "validate_only left 2 partitions")
    check(error_name(admin.create_partitions([NewPartitions(TOPIC, 4)])[TOPIC]) == "NO_ERROR",
          "2 -> 4 partitions")
    check(partitions(admin) == 4, "4 partitions in metadata: %d" % partitions(admin))
    check(produce(bs, 3, b"p3-first") == 0, "produce to new partition 3")
    check(consume(bs, 3, 0, 1) == [b"p3-first"], "fetch from new partition 3")

    # DescribeConfigs: sources, defaults, read-only, synonyms.
    cfg = describe(admin, TOPIC)
    rm = cfg["retention.ms"]
    check(rm.source == ConfigSource.DEFAULT_CONFIG.value and rm.is_default and not rm.is_read_only
          and not rm.is_sensitive, "retention.ms default: %r" % rm)
    check("log.retention.ms" in rm.synonyms, "retention.ms synonym log.retention.ms: %s"
          % list(rm.synonyms))
    mm = cfg["max.message.bytes"]
    check(mm.source == ConfigSource.STATIC_BROKER_CONFIG.value and mm.value == "500000"
          and not mm.is_default, "max.message.bytes from message.max.bytes: %r" % mm)
    check(cfg["segment.bytes"].is_read_only, "segment.bytes read-only")
    check(not cfg["cleanup.policy"].is_read_only and cfg["cleanup.policy"].value == "delete",
          "cleanup.policy writable, delete")

    # AlterConfigs: the four supported names, values checked.
    check(alter(admin, {"retention.ms": "86400000", "max.message.bytes": "2000",
                        "retention.bytes": "1048576", "cleanup.policy": "delete"}) == "NO_ERROR",
          "alter supported configs")
    cfg = describe(admin, TOPIC)
    rm = cfg["retention.ms"]
    check(rm.value == "86400000" and rm.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
          and not rm.is_default, "retention.ms override: %r" % rm)
    syn = list(rm.synonyms.values())
    check(len(syn) == 2 and syn[0].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
          and syn[1].name == "log.retention.ms", "synonyms override then broker: %r" % syn)
    check(cfg["retention.bytes"].value == "1048576", "retention.bytes override")
    for bad in ({"segment.bytes": "1000"}, {"cleanup.policy": "compact"},
                {"cleanup.policy": "delete,compact"}, {"retention.ms": "soon"},
                {"retention.ms": "-2"}, {"max.message.bytes": "-5"},
                {"max.message.bytes": "99999999999"}, {"compression.type": "brotli"},
                {"flush.ms": "-1"}, {"message.format.version": "0.7.0"}):
        check(alter(admin, bad) == "INVALID_CONFIG", "INVALID_CONFIG for %s" % bad)
    check(describe(admin, TOPIC)["retention.ms"].value == "86400000", "refusals changed nothing")
    check(alter(admin, {"retention.ms": "5", "max.message.bytes": "2000"}, validate_only=True)
          == "NO_ERROR", "validate_only alter")
    check(describe(admin, TOPIC)["retention.ms"].value == "86400000", "validate_only kept it")
    check(alter(admin, {"num.partitions": "5"}, rtype=ConfigResource.Type.BROKER, name="1")
          == "INVALID_REQUEST", "broker alter refused")

    # The broker's dynamic Kerberos login settings (no SASL listener: met by
    # construction), stored per node.
    def broker(name="1"):
        res = ConfigResource(ConfigResource.Type.BROKER, name)
        return admin.describe_configs([res])[res].result(15)
    kb = "sasl.kerberos.min.time.before.relogin"
    b = broker()
    check(b[kb].value == "60000" and b[kb].source == ConfigSource.DEFAULT_CONFIG.value
          and not b[kb].is_read_only, "%s: Kafka's default, writable: %r" % (kb, b[kb]))
    check(b["message.max.bytes"].is_read_only, "static broker keys stay read-only")
    for bad, what in (({kb: "soon"}, "a bad value"), ({kb: "-1"}, "a negative value"),
                      ({kb: "58000", "num.partitions": "5"}, "with a static key")):
        check(alter(admin, bad, rtype=ConfigResource.Type.BROKER, name="1") == "INVALID_REQUEST",
              "broker alter refused: %s" % what)
    check(alter(admin, {kb: "58000"}, validate_only=True, rtype=ConfigResource.Type.BROKER,
                name="1") == "NO_ERROR", "validate_only broker alter")
    check(broker()[kb].value == "60000", "validate_only stored nothing")
    check(alter(admin, {kb: "58000", "sasl.kerberos.ticket.renew.jitter": "0.1"},
                rtype=ConfigResource.Type.BROKER, name="1") == "NO_ERROR", "broker alter")
    b = broker()
    check(b[kb].value == "58000" and b[kb].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
          and b["sasl.kerberos.ticket.renew.jitter"].value == "0.1",
          "broker dynamic configs described back: %r" % b[kb])
    check(alter(admin, {kb: "57000"}, rtype=ConfigResource.Type.BROKER, name="1") == "NO_ERROR",
          "broker alter replaces the set")
    b = broker()
    check(b[kb].value == "57000" and b["sasl.kerberos.ticket.renew.jitter"].value == "0.05",
          "the rest back to the default: %r" % b["sasl.kerberos.ticket.renew.jitter"])
    check(alter(admin, {"retention.ms": "5"}, name="cp-nope") == "UNKNOWN_TOPIC_OR_PART",
          "alter unknown topic")

    # max.message.bytes applies to Produce at once.
    check(produce(bs, 0, b"x" * 5000) == "MSG_SIZE_TOO_LARGE", "5000 bytes above 2000 refused")
    check(produce(bs, 0, b"y" * 100) == 0, "a small record passes")
    check(alter(admin, {"retention.ms": "86400000", "max.message.bytes": "100000"})
          == "NO_ERROR", "raise max.message.bytes")
    check(produce(bs, 0, b"x" * 5000) == 1, "5000 bytes accepted after raising")
    check(alter(admin, {"retention.ms": "86400000", "max.message.bytes": "2000"})
          == "NO_ERROR", "lower max.message.bytes again")


def after_restart(srv):
    bs = srv.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    check(partitions(admin) == 4, "4 partitions after restart")
    cfg = describe(admin, TOPIC)
    check(cfg["retention.ms"].value == "86400000" and cfg["max.message.bytes"].value == "2000",
          "configs after restart")
    check(produce(bs, 0, b"x" * 5000) == "MSG_SIZE_TOO_LARGE", "max.message.bytes after restart")
    check(produce(bs, 3, b"p3-second") == 1, "produce to partition 3 after restart")
    check(consume(bs, 3, 0, 2) == [b"p3-first", b"p3-second"], "partition 3 after restart")
    check(error_name(admin.create_partitions([NewPartitions(TOPIC, 5)])[TOPIC]) == "NO_ERROR",
          "4 -> 5 after restart")
    check(produce(bs, 4, b"p4") == 0, "produce to partition 4")
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    kb = admin.describe_configs([res])[res].result(15)["sasl.kerberos.min.time.before.relogin"]
    check(kb.value == "57000" and kb.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
          "broker dynamic config after restart: %r" % kb)


def main():
    srv = NuthatchServer({"message.max.bytes": 500000})
    with srv:
        run(srv)
        check(srv.stop() == 0, "clean stop")
        srv.start()
        after_restart(srv)
        check(srv.stop() == 0, "clean stop after restart")
    if failures:
        print("0040-confluent_admin: %d failures" % len(failures))
        return 1
    print("0040-confluent_admin: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
