#!/usr/bin/python3
"""0025-topic_compression: a topic's compression.type applies to what is
stored, as in Kafka.

confluent-kafka-python 1.7.0 sets compression.type through AlterConfigs
(zstd, uncompressed) and CreateTopics (gzip; an unknown codec is
INVALID_CONFIG there too) and leaves one topic at "producer"; a topic's
whole described set is sent back with message.format.version changed
(read-only entries at their values are no-ops, an override from CreateTopics
stays).  Producers write records with keys, headers and timestamps:
uncompressed to the zstd and gzip topics (one of them idempotent), snappy to
the uncompressed topic, lz4 to the "producer" topic.  A consumer reads
every record back at the offset its delivery report gave, unchanged.
Hand-built Fetch v4 requests (lib/kafka_wire.py) then walk the stored
batches: each carries the topic's codec (lz4 as the producer sent it on the
"producer" topic), its CRC holds, and the idempotent producer's id, epoch
and sequences are those it sent.  Hand-built Produce v3 requests: a gzip
batch of 200 KB of zeros that fits max.message.bytes compressed but not
once stored uncompressed is MESSAGE_TOO_LARGE (10) and nothing is stored; a
gzip batch with a valid CRC but corrupt compressed bytes is CORRUPT_MESSAGE
(2) on a topic that recompresses; a gzip batch on the zstd topic is stored
as zstd.  After a restart everything reads back the same from the stores.
"""

import gzip
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402
import kafka_wire as kw  # noqa: E402

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, \
        TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
except ImportError:
    print("0025: confluent_kafka not installed: skipped")
    sys.exit(77)

CODEC = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
N = 300
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def alter(admin, topic, configs):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config=configs)
    try:
        admin.alter_configs([res])[res].result(15)
        return "NO_ERROR"
    except KafkaException as e:
        return e.args[0].name()


def described(admin, topic, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(15)[name].value


def records(tag):
    """N (key, value, headers, timestamp) -- compressible, not trivial."""
    base = 1700000000000
    return [(b"k%d" % i, (b"%s record %05d " % (tag.encode(), i)) * (1 + i % 7),
             [("h", b"%d" % i)], base + i) for i in range(N)]


def produce(bs, topic, codec, recs, idempotent=False):
    p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 50,
                  "batch.num.messages": 60, "enable.idempotence": idempotent, "acks": "all"})
    offsets = {}

    def report(err, msg):
        if check(err is None, "%s: delivery: %s" % (topic, err)):
            offsets[msg.key()] = msg.offset()

    for k, v, h, ts in recs:
        p.produce(topic, key=k, value=v, headers=h, timestamp=ts, partition=0,
                  on_delivery=report)
    p.flush(60)
    return offsets


def consume(bs, topic, n):
    c = Consumer({"bootstrap.servers": bs, "group.id": "nh-0025", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append((m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]))
            if len(got) >= n:
                break
    c.close()
    return got


def stored_batches(bs, topic):
    """[(base offset, codec, crc ok, producer id, epoch, base sequence, count)]
    of every batch of partition 0, by hand-built Fetch v4."""
    conn = kw.Conn(bs)
    out, offset = [], 0
    while True:
        body = kw.i32(-1) + kw.i32(0) + kw.i32(0) + kw.i32(1 << 20) + kw.i8(0)
        body += kw.array([kw.string(topic) + kw.array([kw.i32(0) + kw.i64(offset)
                                                      + kw.i32(1 << 20)])])
        r = kw.Reader(conn.call(1, 4, body))
        r.i32()
        r.i32()  # one topic
        r.string()
        r.i32()  # one partition
        r.i32()
        err, hw = r.i16(), r.i64()
        r.i64()
        r.array(lambda: (r.i64(), r.i64()))
        data = r.bytes_() or b""
        check(err == 0, "%s: fetch error %d" % (topic, err))
        b = kw.Reader(data)
        got = 0
        while len(data) - b.p >= 61:
            base, blen = b.i64(), b.i32()
            if blen > len(data) - b.p:
                break
            body = kw.Reader(b.take(blen))
            body.i32()
            body.i8()
            crc = struct.unpack(">I", body.take(4))[0]
            crc_ok = kw.crc32c(body.d[body.p:]) == crc
            attrs = body.i16()
            body.take(4 + 8 + 8)
            pid, epoch, seq, count = body.i64(), body.i16(), body.i32(), body.i32()
            if base >= offset:
                out.append((base, attrs & 7, crc_ok, pid, epoch, seq, count))
                offset = base + count
                got += 1
        if got == 0 or offset >= hw:
            conn.close()
            return out


def gzip_batch(values, corrupt=False):
    """A gzip RecordBatch v2 holding @values, CRC valid."""
    plain = kw.record_batch(values)
    recs = plain[61:]
    z = bytearray(gzip.compress(recs))
    if corrupt:
        for i in range(10, len(z) - 8):
            z[i] ^= 0x5A
    after_crc = kw.i16(1) + plain[23:61] + bytes(z)
    tail = kw.i32(-1) + kw.i8(2) + struct.pack(">I", kw.crc32c(after_crc)) + after_crc
    return kw.i64(0) + kw.i32(len(tail)) + tail


def check_topic(bs, topic, recs, offsets, what):
    got = consume(bs, topic, len(recs))
    want = sorted((offsets.get(k, -1), k, v, h, ts) for k, v, h, ts in recs)
    check(len(got) == len(recs), "%s %s: %d records read back, %d produced"
          % (what, topic, len(got), len(recs)))
    check([g[0] for g in got] == [w[0] for w in want], "%s %s: offsets as delivered" % (what, topic))
    bad = [g for g, w in zip(got, want) if g[1:] != (w[1], w[2], [(w[3][0][0], w[3][0][1])], w[4])]
    check(not bad, "%s %s: records differ: %s" % (what, topic, bad[:1]))


def run(srv):
    bs = srv.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    fs = admin.create_topics([NewTopic("tc-zstd", 1, 1), NewTopic("tc-plain", 1, 1),
                              NewTopic("tc-prod", 1, 1), NewTopic("tc-big", 1, 1),
                              NewTopic("tc-gzip", 1, 1, config={"compression.type": "gzip"})])
    for t, f in fs.items():
        f.result(15)
    bad = admin.create_topics([NewTopic("tc-bad", 1, 1, config={"compression.type": "brotli"})])
    try:
        bad["tc-bad"].result(15)
        check(False, "CreateTopics with compression.type brotli accepted")
    except KafkaException as e:
        check(e.args[0].name() == "INVALID_CONFIG", "CreateTopics brotli: %s" % e)
    check(alter(admin, "tc-zstd", {"compression.type": "zstd"}) == "NO_ERROR", "alter zstd")
    check(alter(admin, "tc-plain", {"compression.type": "uncompressed"}) == "NO_ERROR",
          "alter uncompressed")
    check(alter(admin, "tc-big", {"compression.type": "uncompressed",
                                  "max.message.bytes": "20000"}) == "NO_ERROR", "alter tc-big")
    check(alter(admin, "tc-prod", {"compression.type": "brotli"}) == "INVALID_CONFIG",
          "an unknown codec is INVALID_CONFIG")
    for t, v in (("tc-zstd", "zstd"), ("tc-gzip", "gzip"), ("tc-plain", "uncompressed"),
                 ("tc-prod", "producer")):
        check(described(admin, t, "compression.type") == v, "%s described as %s" % (t, v))

    # The whole described set sent back with one change (as librdkafka's
    # test_AlterConfigs_simple does): read-only entries at their values are
    # no-ops, an override CreateTopics stored stays.
    admin.create_topics([NewTopic("tc-keep", 1, 1, config={"delete.retention.ms": "900"})])[
        "tc-keep"].result(15)
    res = ConfigResource(ConfigResource.Type.TOPIC, "tc-keep")
    now = {k: v.value for k, v in admin.describe_configs([res])[res].result(15).items()}
    check("segment.bytes" in now and now.get("delete.retention.ms") == "900",
          "tc-keep described: %s" % now)
    now["message.format.version"] = "0.10.0.0"
    check(alter(admin, "tc-keep", now) == "NO_ERROR", "the described set re-sent")
    after = {k: v.value for k, v in admin.describe_configs([res])[res].result(15).items()}
    check(after.get("delete.retention.ms") == "900"
          and after.get("message.format.version") == "0.10.0.0", "after re-sending: %s" % after)
    check(alter(admin, "tc-keep", dict(now, **{"segment.bytes": "1000"})) == "INVALID_CONFIG",
          "a read-only entry at another value is INVALID_CONFIG")

    plan = {"tc-zstd": ("none", True), "tc-gzip": ("none", False),
            "tc-plain": ("snappy", False), "tc-prod": ("lz4", False)}
    sent = {}
    for topic, (codec, idem) in plan.items():
        recs = records(topic)
        sent[topic] = (recs, produce(bs, topic, codec, recs, idem))
        check_topic(bs, topic, recs, sent[topic][1], "first read")

    expect = {"tc-zstd": 4, "tc-gzip": 1, "tc-plain": 0, "tc-prod": 3}
    for topic, codec in expect.items():
        batches = stored_batches(bs, topic)
        check(len(batches) >= 2, "%s: %d batches stored" % (topic, len(batches)))
        codecs = set(b[1] for b in batches)
        if topic == "tc-prod":
            # as sent: librdkafka sends a batch uncompressed when lz4 would not shrink it
            check(3 in codecs and codecs <= {0, 3}, "tc-prod: the producer's codecs: %s" % codecs)
        else:
            check(codecs == {codec}, "%s: every stored batch has codec %d: %s"
                  % (topic, codec, [b[1] for b in batches]))
        check(all(b[2] for b in batches), "%s: every stored CRC holds" % topic)
        check(sum(b[6] for b in batches) == N, "%s: %d records in the batches" % (topic, N))
    zb = stored_batches(bs, "tc-zstd")
    check(all(b[3] >= 0 and b[4] >= 0 for b in zb), "tc-zstd: idempotent producer id kept")
    check([b[5] for b in zb] == [b[0] for b in zb], "tc-zstd: sequences as sent (from 0, "
          "one per record, like the offsets): %s" % [(b[0], b[5]) for b in zb][:5])

    conn = kw.Conn(bs)
    big = gzip_batch([b"\0" * 200000])
    check(len(big) < 20000, "the gzip batch is small: %d" % len(big))
    check(kw.produce_v3(conn, "tc-big", 0, big)[0] == 10,
          "stored uncompressed the batch exceeds max.message.bytes: MESSAGE_TOO_LARGE")
    check(kw.produce_v3(conn, "tc-big", 0, gzip_batch([b"\0" * 5000]))[0] == 0,
          "a smaller one fits")
    check([(b[1], b[6]) for b in stored_batches(bs, "tc-big")] == [(0, 1)],
          "tc-big: only the small batch stored, uncompressed")
    check(kw.produce_v3(conn, "tc-zstd", 0, gzip_batch([b"x" * 100], corrupt=True))[0] == 2,
          "corrupt gzip on a recompressing topic: CORRUPT_MESSAGE")
    err, base = kw.produce_v3(conn, "tc-zstd", 0, gzip_batch([b"gz-%d" % i for i in range(10)]))
    check(err == 0 and base == N, "gzip batch to the zstd topic: %d at %d" % (err, base))
    conn.close()
    last = stored_batches(bs, "tc-zstd")[-1]
    check(last[0] == N and last[1] == 4 and last[2] and last[6] == 10,
          "the gzip batch stored as zstd: %s" % (last,))


def after_restart(srv):
    bs = srv.bootstrap
    for topic in ("tc-zstd", "tc-gzip", "tc-plain"):
        batches = stored_batches(bs, topic)
        check(all(b[2] for b in batches) and batches, "after restart %s: CRCs" % topic)
    got = consume(bs, "tc-zstd", N + 10)
    check(len(got) == N + 10 and got[-1][2] == b"gz-9",
          "after restart: tc-zstd reads back whole (%d)" % len(got))


def main():
    srv = NuthatchServer()
    with srv:
        run(srv)
        check(srv.stop() == 0, "clean stop")
        srv.start()
        after_restart(srv)
        check(srv.stop() == 0, "clean stop after restart")
    if failures:
        print("0025-topic_compression: %d failures" % len(failures))
        return 1
    print("0025-topic_compression: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
