#!/usr/bin/python3
"""0021-confluent_group: confluent-kafka-python 1.7.0 (librdkafka) consumer
groups against one nuthatch (JoinGroup v5, SyncGroup v3, Heartbeat v3,
LeaveGroup v1, OffsetCommit v7, OffsetFetch v7, ListGroups and
DescribeGroups v0):
  - a group consumer committing synchronously after every record; its
    committed offsets and metadata strings read back;
  - cooperative-sticky with two members: the second's arrival revokes only
    the partitions that move (incremental), each ends with half; when the
    second leaves, the first is given back exactly its partitions;
  - static membership: two members with group.instance.id; one closes
    (no LeaveGroup) and a new consumer with its instance id gets the same
    partitions back while the other member sees no rebalance at all;
  - after a gateway restart the committed offsets are still there and the
    group is listed (Empty, protocol type "consumer", kept in the store) by
    AdminClient.list_groups; a group that only committed offsets is listed
    with protocol type ""."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0021: confluent-kafka not installed: skipped")
    sys.exit(77)

TOPIC = "cg"
NPARTS = 4
PER_PART = 10
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def setup(bs):
    a = AdminClient({"bootstrap.servers": bs})
    for f in a.create_topics([NewTopic(TOPIC, NPARTS, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": bs, "acks": "all"})
    for i in range(NPARTS * PER_PART):
        p.produce(TOPIC, value=b"v%d" % i, partition=i % NPARTS)
    check(p.flush(30) == 0, "producer flushed")


def consumer(bs, group, **extra):
    conf = {"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000}
    conf.update(extra)
    return Consumer(conf)


def poll_until(consumers, cond, timeout, on_msg=None):
    end = time.time() + timeout
    while time.time() < end:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and not m.error() and on_msg:
                on_msg(c, m)
        if cond():
            return True
    return False


def sync_commits(bs):
    c = consumer(bs, "cg-sync")
    c.subscribe([TOPIC])
    got = []

    def on_msg(c, m):
        got.append((m.partition(), m.offset()))
        tp = TopicPartition(TOPIC, m.partition(), m.offset() + 1)
        res = c.commit(offsets=[tp], asynchronous=False)
        check(res[0].error is None, "commit of %s" % tp)

    check(poll_until([c], lambda: len(got) >= NPARTS * PER_PART, 60, on_msg),
          "consumed %d of %d with synchronous commits" % (len(got), NPARTS * PER_PART))
    check(len(set(got)) == len(got), "no record twice")
    committed = c.committed([TopicPartition(TOPIC, p) for p in range(NPARTS)], timeout=10)
    check([tp.offset for tp in committed] == [PER_PART] * NPARTS,
          "committed %s" % [tp.offset for tp in committed])
    c.close()  # leaves the group: it is Empty with its offsets


def cooperative(bs):
    events = {"c1": [], "c2": []}

    def cbs(name):
        def on_assign(c, parts):
            events[name].append(("assign", sorted(p.partition for p in parts)))

        def on_revoke(c, parts):
            events[name].append(("revoke", sorted(p.partition for p in parts)))
        return on_assign, on_revoke

    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    c1 = consumer(bs, "cg-coop", **conf)
    a1, r1 = cbs("c1")
    c1.subscribe([TOPIC], on_assign=a1, on_revoke=r1)
    check(poll_until([c1], lambda: len(c1.assignment()) == NPARTS, 30),
          "first cooperative member owns every partition: %s" % events)
    c2 = consumer(bs, "cg-coop", **conf)
    a2, r2 = cbs("c2")
    c2.subscribe([TOPIC], on_assign=a2, on_revoke=r2)
    ok = poll_until([c1, c2], lambda: len(c1.assignment()) == 2 and len(c2.assignment()) == 2,
                    60)
    check(ok, "cooperative split 2/2: c1 %s, c2 %s; events %s"
          % (c1.assignment(), c2.assignment(), events))
    own1 = sorted(p.partition for p in c1.assignment())
    own2 = sorted(p.partition for p in c2.assignment())
    check(sorted(own1 + own2) == list(range(NPARTS)), "together every partition")
    revokes = [e for e in events["c1"] if e[0] == "revoke"]
    # Incremental: c1 gave up exactly the two partitions c2 got, never all four.
    check(revokes == [("revoke", own2)], "c1's revocations %s (c2 owns %s)" % (revokes, own2))
    c2.close()
    # c2 left: c1 is given c2's partitions on top of its own.  Waiting for it
    # before c1 closes also keeps c1 from closing in the middle of that
    # rebalance, where librdkafka 2.0.2's close() can hang for good after
    # its LeaveGroup was answered (seen once).
    check(poll_until([c1], lambda: len(c1.assignment()) == NPARTS, 30),
          "after c2 left, c1 owns every partition again: %s" % events)
    check(events["c1"][-1] == ("assign", own2),
          "c1 was given exactly c2's partitions %s: %s" % (own2, events["c1"]))
    print("0021: cooperative-sticky events %s" % events)
    c1.close()


def static_membership(bs, srv):
    events = {"s1": [], "s2": [], "s1b": []}

    def cbs(name):
        def on_assign(c, parts):
            events[name].append(("assign", sorted(p.partition for p in parts)))

        def on_revoke(c, parts):
            events[name].append(("revoke", sorted(p.partition for p in parts)))
        return on_assign, on_revoke

    s1 = consumer(bs, "cg-static", **{"group.instance.id": "inst-1"})
    s2 = consumer(bs, "cg-static", **{"group.instance.id": "inst-2"})
    s1.subscribe([TOPIC], on_assign=cbs("s1")[0], on_revoke=cbs("s1")[1])
    s2.subscribe([TOPIC], on_assign=cbs("s2")[0], on_revoke=cbs("s2")[1])
    ok = poll_until([s1, s2], lambda: len(s1.assignment()) == 2 and len(s2.assignment()) == 2, 60)
    check(ok, "static members split 2/2: %s" % events)
    own1 = sorted(p.partition for p in s1.assignment())
    # Let the group settle, then note what s2 has seen.
    poll_until([s1, s2], lambda: False, 2)
    seen = list(events["s2"])
    rebalances = open(srv.log_path, errors="replace").read().count("rebalancing")
    s1.close()  # a static member sends no LeaveGroup
    s1b = consumer(bs, "cg-static", **{"group.instance.id": "inst-1"})
    s1b.subscribe([TOPIC], on_assign=cbs("s1b")[0], on_revoke=cbs("s1b")[1])
    ok = poll_until([s1b, s2], lambda: len(s1b.assignment()) == 2, 30)
    check(ok, "the restarted static member got partitions: %s" % events)
    check(sorted(p.partition for p in s1b.assignment()) == own1,
          "the restarted static member got its partitions %s back: %s"
          % (own1, s1b.assignment()))
    poll_until([s1b, s2], lambda: False, 4)  # more than a heartbeat interval
    check(events["s2"] == seen, "the other static member saw no rebalance: %s -> %s"
          % (seen, events["s2"]))
    check(len(s2.assignment()) == 2, "the other static member kept its partitions")
    after = open(srv.log_path, errors="replace").read().count("rebalancing")
    check(after == rebalances, "the gateway started no rebalance (%d -> %d)" % (rebalances, after))
    print("0021: static membership events %s" % events)
    s1b.close()
    s2.close()


def after_restart(bs):
    c = consumer(bs, "cg-sync")
    committed = c.committed([TopicPartition(TOPIC, p) for p in range(NPARTS)], timeout=10)
    check([tp.offset for tp in committed] == [PER_PART] * NPARTS,
          "committed after a restart %s" % [tp.offset for tp in committed])
    c.close()
    # A group that only commits (assign, no membership): a "simple" group.
    simple = consumer(bs, "cg-simple")
    simple.commit(offsets=[TopicPartition(TOPIC, 0, 1)], asynchronous=False)
    simple.close()
    a = AdminClient({"bootstrap.servers": bs})
    groups = {g.id: g for g in a.list_groups(timeout=10)}
    check("cg-sync" in groups, "cg-sync listed after a restart: %s" % sorted(groups))
    if "cg-sync" in groups:
        check(groups["cg-sync"].state == "Empty", "state %s" % groups["cg-sync"].state)
        check(groups["cg-sync"].protocol_type == "consumer",
              "protocol type kept across the restart: %r" % groups["cg-sync"].protocol_type)
    if check("cg-simple" in groups, "cg-simple listed: %s" % sorted(groups)):
        check(groups["cg-simple"].protocol_type == "",
              "a group that only committed has protocol type \"\": %r"
              % groups["cg-simple"].protocol_type)


def main():
    with NuthatchServer(settings={"group.initial.rebalance.delay.ms": "300"}) as srv:
        setup(srv.bootstrap)
        sync_commits(srv.bootstrap)
        cooperative(srv.bootstrap)
        static_membership(srv.bootstrap, srv)
        check(srv.stop() == 0, "exit status %s after SIGTERM" % srv.exit_status)
        srv.start()
        after_restart(srv.bootstrap)
        status = srv.stop()
        check(status == 0, "exit status %s after SIGTERM" % status)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-4000:], file=sys.stderr)
    if failures:
        print("0021-confluent_group: %d failure(s)" % len(failures))
        sys.exit(1)
    print("0021-confluent_group: ok")


if __name__ == "__main__":
    main()
