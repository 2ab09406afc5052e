#!/usr/bin/python3
"""0050-create_topics_edges: CreateTopics as librdkafka's regression suite
(0081) drives it, through confluent-kafka-python -- a manual replica
assignment naming this broker creates one partition per entry; assignments
Kafka refuses on a one-broker cluster (an unknown broker, a repeated
replica, a gap in the partition ids, partitions or replication factor set
beside them) are INVALID_REPLICA_ASSIGNMENT or INVALID_REQUEST; a config
name Kafka does not know is INVALID_CONFIG and nothing is created; known
topic configs (compression.type, delete.retention.ms) are accepted and
described back.  CreatePartitions likewise takes one replica list naming
this broker per new partition, and refuses a list per partition that is
missing or names another broker (INVALID_REPLICA_ASSIGNMENT)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
except ImportError:
    print("0050: confluent_kafka not installed: skipped")
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def error_of(admin, topic):
    """The error name CreateTopics gives @topic, or None when created."""
    try:
        admin.create_topics([topic], operation_timeout=10)[topic.topic].result(15)
        return None
    except KafkaException as e:
        return e.args[0].name()


def main():
    with NuthatchServer(settings={"num.partitions": "2"}) as srv:
        admin = AdminClient({"bootstrap.servers": srv.bootstrap})
        md = admin.list_topics(timeout=10)
        node = next(iter(md.brokers))

        # Manual assignment on this broker: 3 partitions.
        err = error_of(admin, NewTopic("assigned", 3, replica_assignment=[[node], [node], [node]]))
        check(err is None, "a manual assignment on this broker: %s" % err)
        md = admin.list_topics(timeout=10)
        parts = md.topics["assigned"].partitions if "assigned" in md.topics else {}
        check(sorted(parts) == [0, 1, 2], "assigned topic's partitions: %s" % sorted(parts))
        check(all(p.leader == node and p.replicas == [node] for p in parts.values()),
              "assigned partitions led by %d" % node)

        # More partitions, each assigned to this broker.
        def grow(count, assignment):
            f = admin.create_partitions([NewPartitions("assigned", count, assignment)],
                                        operation_timeout=10)["assigned"]
            try:
                f.result(15)
                return None
            except KafkaException as e:
                return e.args[0].name()

        err = grow(5, [[node + 1], [node]])
        check(err == "INVALID_REPLICA_ASSIGNMENT", "CreatePartitions on another broker: %s" % err)
        err = grow(5, [[node]])
        check(err == "INVALID_REPLICA_ASSIGNMENT", "CreatePartitions, a list missing: %s" % err)
        err = grow(5, [[node], [node]])
        check(err is None, "CreatePartitions assigned to this broker: %s" % err)
        md = admin.list_topics(timeout=10)
        check(sorted(md.topics["assigned"].partitions) == [0, 1, 2, 3, 4],
              "partitions after CreatePartitions: %s" % sorted(md.topics["assigned"].partitions))

        # What Kafka refuses on a cluster of one broker.
        for name, assignment, want in [
            ("bad-broker", [[node + 1]], "INVALID_REPLICA_ASSIGNMENT"),
            ("bad-repeat", [[node, node]], "INVALID_REPLICA_ASSIGNMENT"),
            ("bad-two", [[node], [node, node + 1]], "INVALID_REPLICA_ASSIGNMENT"),
        ]:
            err = error_of(admin, NewTopic(name, len(assignment), replica_assignment=assignment))
            check(err == want, "%s %s: %s, not %s" % (name, assignment, err, want))
        md = admin.list_topics(timeout=10)
        check(not any(t.startswith("bad-") for t in md.topics),
              "refused topics were created: %s" % sorted(md.topics))

        # Unknown config names are INVALID_CONFIG; known ones are kept.
        err = error_of(admin, NewTopic("bad-config", 1, 1,
                                       config={"dummy.doesntexist": "x", "retention.ms": "1000"}))
        check(err == "INVALID_CONFIG", "an unknown config name: %s" % err)
        err = error_of(admin, NewTopic("good-config", 1, 1,
                                       config={"compression.type": "lz4",
                                               "delete.retention.ms": "900"}))
        check(err is None, "known topic configs: %s" % err)
        res = ConfigResource(ConfigResource.Type.TOPIC, "good-config")
        cfgs = admin.describe_configs([res])[res].result(10)
        check(cfgs["compression.type"].value == "lz4", "compression.type described back")
        md = admin.list_topics(timeout=10)
        check("bad-config" not in md.topics, "a topic with an unknown config was created")
    if srv.exit_status != 0:
        check(False, "SIGTERM stop: exit status %s" % srv.exit_status)
    if failures:
        print("0050-create_topics_edges: %d failures" % len(failures))
        return 1
    print("0050-create_topics_edges: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
