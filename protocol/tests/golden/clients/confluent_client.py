#!/usr/bin/python3
"""Drives confluent-kafka-python (librdkafka 2.0.2) against a broker, for capture.sh.

usage: confluent_client.py MODE BOOTSTRAP TOPIC
  MODE produce | consume | admin
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

mode, bootstrap, topic = sys.argv[1:4]
common = {"bootstrap.servers": bootstrap, "client.id": "golden-confluent"}

if mode == "produce":
    p = Producer(dict(common, **{"enable.idempotence": True, "linger.ms": 20}))
    for i in range(3):
        p.produce(topic, key=b"k%d" % i, value=b"confluent #%d" % i, headers=[("h", b"v")])
    left = p.flush(10)
    print("confluent produce: %d undelivered" % left)
elif mode == "consume":
    c = Consumer(dict(common, **{"group.id": "golden-confluent-group",
                                 "auto.offset.reset": "earliest",
                                 "enable.auto.commit": False,
                                 "heartbeat.interval.ms": 300,
                                 "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got = 0
    deadline = time.time() + 20
    while time.time() < deadline and not got:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
            c.commit(message=m, asynchronous=False)
    end = time.time() + 1.5
    while time.time() < end:
        c.poll(0.2)
    print("confluent consumed %d, committed %s" % (got, c.committed([TopicPartition(topic, 0)], timeout=5)))
    c.close()
elif mode == "admin":
    a = AdminClient(common)
    name = topic + "-admin"
    for f in a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                             operation_timeout=5, request_timeout=10).values():
        f.result(timeout=15)
    for f in a.delete_topics([name], operation_timeout=5, request_timeout=10).values():
        f.result(timeout=15)
    print("confluent admin: created and deleted", name)
else:
    sys.exit("unknown mode " + mode)
