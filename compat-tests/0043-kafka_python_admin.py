#!/usr/bin/python3
"""0043-kafka_python_admin: kafka-python 2.0.2's KafkaAdminClient against
one nuthatch -- create_partitions (CreatePartitions v0: increase,
INVALID_PARTITIONS for the same count or fewer, validate_only),
describe_configs (DescribeConfigs v0, and v1 with synonyms) and
alter_configs (AlterConfigs v0: the supported names change, others and bad
values are INVALID_CONFIG, a broker is INVALID_REQUEST)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError
except ImportError:
    print("0043: kafka-python not installed: skipped")
    sys.exit(77)

TOPIC = "kp-admin"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def cp_error(admin, count, validate_only=False, topic=TOPIC):
    """The error codes of a create_partitions (it raises on the first)."""
    try:
        r = admin.create_partitions({topic: NewPartitions(count)}, validate_only=validate_only)
    except KafkaError as e:
        return [e.errno]
    return [e[1] for e in r.topic_errors]


def alter_error(admin, configs, rtype=ConfigResourceType.TOPIC, name=TOPIC):
    r = admin.alter_configs([ConfigResource(rtype, name, configs=configs)])
    return [x[0] for x in r.resources]


def describe(admin, synonyms=False):
    r = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)],
                               include_synonyms=synonyms)[0]
    res = r.resources[0]
    check(res[0] == 0, "describe error %s" % (res,))
    # v0 entries: (name, value, read_only, is_default, is_sensitive);
    # v1: (name, value, read_only, source, is_sensitive, synonyms)
    return {e[0]: e for e in res[4]}, r.API_VERSION


def main():
    with NuthatchServer() as srv:
        admin = KafkaAdminClient(bootstrap_servers=srv.bootstrap, request_timeout_ms=10000)
        admin.create_topics([NewTopic(TOPIC, 2, 1)])
        check(cp_error(admin, 2) == [37], "same count: INVALID_PARTITIONS")
        check(cp_error(admin, 1) == [37], "fewer: INVALID_PARTITIONS")
        check(cp_error(admin, 6, validate_only=True) == [0], "validate_only")
        check(cp_error(admin, 3) == [0], "2 -> 3")
        check(cp_error(admin, 3, topic="kp-none") == [3], "unknown topic")
        p = KafkaProducer(bootstrap_servers=srv.bootstrap)
        md = p.send(TOPIC, b"to-2", partition=2).get(15)
        check(md.partition == 2 and md.offset == 0, "produce to the new partition 2")
        p.close()
        c = KafkaConsumer(bootstrap_servers=srv.bootstrap, consumer_timeout_ms=5000)
        check(c.partitions_for_topic(TOPIC) == {0, 1, 2}, "3 partitions in metadata")
        c.assign([TopicPartition(TOPIC, 2)])
        c.seek(TopicPartition(TOPIC, 2), 0)
        got = [m.value for m in c]
        check(got == [b"to-2"], "fetch from partition 2: %s" % got)
        c.close()

        check(alter_error(admin, {"retention.ms": "1000", "cleanup.policy": "delete"}) == [0],
              "alter retention.ms and cleanup.policy")
        check(alter_error(admin, {"cleanup.policy": "compact"}) == [40], "compact refused")
        check(alter_error(admin, {"segment.ms": "5"}) == [40], "segment.ms refused")
        check(alter_error(admin, {"max.message.bytes": "big"}) == [40], "bad number refused")
        check(alter_error(admin, {"message.max.bytes": "5"}, ConfigResourceType.BROKER, "1")
              == [42], "broker refused")
        cfg, version = describe(admin)
        rm = cfg.get("retention.ms")
        if version == 0:
            check(rm and rm[1] == "1000" and not rm[3], "retention.ms override (v0): %s" % (rm,))
        else:
            check(rm and rm[1] == "1000" and rm[3] == 1, "retention.ms override (v1): %s" % (rm,))
        check(cfg["segment.bytes"][2], "segment.bytes read-only")
        cfg, version = describe(admin, synonyms=True)
        check(version >= 1, "synonyms need DescribeConfigs v1+: v%d" % version)
        rm = cfg["retention.ms"]
        check([s[0] for s in rm[5]] == ["retention.ms", "log.retention.ms"]
              and rm[5][0][2] == 1 and rm[5][1][2] == 5, "synonyms: %s" % (rm[5],))
        admin.close()
        check(srv.stop() == 0, "clean stop")
    if failures:
        print("0043-kafka_python_admin: %d failures" % len(failures))
        return 1
    print("0043-kafka_python_admin: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
