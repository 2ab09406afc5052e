#!/usr/bin/python3
"""0020-kafka_python_group: kafka-python 2.0.2 consumer groups against one
nuthatch (JoinGroup v2, SyncGroup v1, Heartbeat v1, LeaveGroup v1,
OffsetCommit v2, OffsetFetch v1): a member (its own thread, heartbeat
thread, synchronous commits after every poll) owns both partitions and
reads 40 records; a second member joins and the group rebalances to one
partition each; 40 more records are read by their owners, none twice and
none lost; committed offsets are at the partitions' ends; the admin client
lists and describes the group (Stable, two members)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
except ImportError:
    print("0020: kafka-python not installed: skipped")
    sys.exit(77)

TOPIC = "kpg"
GROUP = "kpg-group"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


class Member(threading.Thread):
    def __init__(self, bs, name):
        super().__init__(daemon=True)
        self.bs, self.name = bs, name
        self.got = []
        self.parts = set()
        self.stop = threading.Event()
        self.errors = []

    def run(self):
        try:
            c = KafkaConsumer(TOPIC, bootstrap_servers=self.bs, group_id=GROUP, client_id=self.name,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              session_timeout_ms=10000, heartbeat_interval_ms=1000)
            while not self.stop.is_set():
                batch = c.poll(timeout_ms=100)
                for tp, msgs in batch.items():
                    self.got += [(m.partition, m.offset) for m in msgs]
                if batch:
                    c.commit()
                self.parts = {tp.partition for tp in c.assignment()}
            c.close()  # LeaveGroup
        except Exception as e:  # reported by the main thread
            self.errors.append(repr(e))


def wait(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def produce(bs, start, n):
    p = KafkaProducer(bootstrap_servers=bs, acks="all")
    for i in range(start, start + n):
        p.send(TOPIC, value=b"v%d" % i, partition=i % 2)
    p.flush(30)
    p.close()


def run(bs):
    produce(bs, 0, 40)
    a = Member(bs, "member-a")
    a.start()
    check(wait(lambda: len(a.got) >= 40, 60), "member a read %d of 40" % len(a.got))
    check(a.parts == {0, 1}, "member a owns both partitions: %s" % a.parts)
    b = Member(bs, "member-b")
    b.start()
    ok = wait(lambda: len(a.parts) == 1 and len(b.parts) == 1, 60)
    check(ok and a.parts | b.parts == {0, 1},
          "rebalanced to one partition each: a %s, b %s" % (a.parts, b.parts))
    admin = KafkaAdminClient(bootstrap_servers=bs)
    listed = dict(admin.list_consumer_groups())
    check(listed.get(GROUP) == "consumer", "list_consumer_groups: %s" % listed)
    desc = admin.describe_consumer_groups([GROUP])[0]
    check(desc.state == "Stable" and len(desc.members) == 2,
          "describe_consumer_groups: %s, %d members" % (desc.state, len(desc.members)))
    admin.close()
    produce(bs, 40, 40)
    check(wait(lambda: len(set(a.got) | set(b.got)) >= 80, 60),
          "read %d distinct records of 80" % len(set(a.got) | set(b.got)))
    time.sleep(1)
    both = a.got + b.got
    check(len(both) == len(set(both)) == 80, "%d reads, %d distinct" % (len(both), len(set(both))))
    for m in (a, b):
        check(all(p in m.parts for p, o in m.got if o >= 20),
              "%s read only its own partition after the rebalance" % m.name)
    for m in (a, b):
        m.stop.set()
        m.join(30)
        check(not m.errors, "%s: %s" % (m.name, m.errors))
    c = KafkaConsumer(bootstrap_servers=bs, group_id=GROUP, enable_auto_commit=False)
    committed = [c.committed(TopicPartition(TOPIC, p)) for p in (0, 1)]
    check(committed == [40, 40], "committed %s" % committed)
    c.close()


def main():
    with NuthatchServer(settings={"num.partitions": "2",
                                  "group.initial.rebalance.delay.ms": "300"}) as srv:
        run(srv.bootstrap)
        status = srv.stop()
        check(status == 0, "exit status %s after SIGTERM" % status)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-4000:], file=sys.stderr)
    if failures:
        print("0020-kafka_python_group: %d failure(s)" % len(failures))
        sys.exit(1)
    print("0020-kafka_python_group: ok")


if __name__ == "__main__":
    main()
