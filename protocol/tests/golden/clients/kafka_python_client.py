#!/usr/bin/python3
"""Drives kafka-python 2.0.2 against a broker, for capture.sh.

usage: kafka_python_client.py MODE BOOTSTRAP TOPIC
  MODE produce | consume | admin
Versions are negotiated from ApiVersions (api_version is left unset).
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

mode, bootstrap, topic = sys.argv[1:4]
common = dict(bootstrap_servers=[bootstrap], client_id="golden-kafka-python",
              request_timeout_ms=10000)

if mode == "produce":
    for codec in (None, "gzip", "snappy", "lz4", "zstd"):
        p = KafkaProducer(compression_type=codec, acks="all", linger_ms=20, **common)
        for i in range(3):
            p.send(topic, key=b"k%d" % i, value=b"kafka-python %s #%d" % (str(codec).encode(), i),
                   headers=[("h", b"v%d" % i)])
        p.flush(timeout=10)
        p.close(timeout=5)
elif mode == "consume":
    c = KafkaConsumer(group_id="golden-kafka-python-group", auto_offset_reset="earliest",
                      enable_auto_commit=False, heartbeat_interval_ms=300,
                      session_timeout_ms=6000, consumer_timeout_ms=2000, **common)
    c.subscribe([topic])
    got = 0
    deadline = time.time() + 20
    while time.time() < deadline:
        recs = c.poll(timeout_ms=500)
        for tp, msgs in recs.items():
            got += len(msgs)
        if got:
            c.commit()
            break
    # keep the membership a moment so that heartbeats flow
    end = time.time() + 1.5
    while time.time() < end:
        c.poll(timeout_ms=200)
    tp = TopicPartition(topic, 0)
    print("kafka-python consumed %d, committed %s" % (got, c.committed(tp)))
    c.close()
elif mode == "admin":
    a = KafkaAdminClient(**common)
    name = topic + "-admin"
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], timeout_ms=5000)
    a.delete_topics([name], timeout_ms=5000)
    print("kafka-python admin: created and deleted", name)
    a.close()
else:
    sys.exit("unknown mode " + mode)
