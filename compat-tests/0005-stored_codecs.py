#!/usr/bin/python3
"""0005-stored_codecs: batches are stored as the producer compressed them.

For each codec (none, gzip, snappy, lz4, zstd) kcat and confluent-kafka-python
each produce keyed records with headers to a topic of their own, and read
them back.  The clients reach the gateway through a relay that keeps the
record batches of every Produce request.  After a graceful stop,
nuthatch-dump reads the flush objects without the gateway (the files under
the data directory, or in the S3 server's directory with NH_BACKEND=s3) and,
for every stored batch of each topic: its codec bits are the codec the
producer was set to,
its CRC holds, it is byte for byte a batch the producer sent (apart from
baseOffset and partitionLeaderEpoch, which the gateway sets), and its
records decode to exactly what was produced.  A gateway that decompressed,
re-compressed or rebuilt batches fails here.

NUTHATCH_DUMP names the dump tool (default: nuthatch-dump next to NUTHATCH).
"""

import collections
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
except ImportError:
    Producer = None
KCAT = shutil.which("kcat")
if Producer is None and KCAT is None:
    print("0005: neither kcat nor confluent_kafka installed: skipped")
    sys.exit(77)

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
N = 400  # records per topic: several batches, each well compressible
NUTHATCH = os.environ.get("NUTHATCH") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "nuthatch")
DUMP = os.environ.get("NUTHATCH_DUMP") or os.path.join(os.path.dirname(NUTHATCH), "nuthatch-dump")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


# ------------------------------------------------------------------ relay

class Reader:
    """Just enough of the Kafka wire format to find a Produce's records."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("short request")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def uvarint(self):
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7

    def length(self, compact, fmt):
        return self.uvarint() - 1 if compact else self.int(fmt)

    def string(self, compact):
        n = self.length(compact, ">h")
        return None if n < 0 else self.take(n).decode()

    def blob(self, compact):
        n = self.length(compact, ">i")
        return None if n < 0 else self.take(n)

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def split_batches(records):
    out, pos = [], 0
    while pos + 12 <= len(records):
        size = struct.unpack(">i", records[pos + 8:pos + 12])[0] + 12
        out.append(records[pos:pos + size])
        pos += size
    return out


def batch_body(batch):
    """A batch without the two fields the gateway sets (baseOffset 0-7,
    partitionLeaderEpoch 12-15)."""
    return batch[8:12] + batch[16:]


class ProduceTap:
    """A loopback TCP relay in front of the gateway that keeps, by topic, the
    record batches of every Produce request it forwards.  The gateway
    advertises the relay's port, so clients use it for every connection."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.sent = collections.defaultdict(list)  # topic -> [batch bytes]
        self.produce_versions = set()
        self.errors = []
        self.lock = threading.Lock()
        self.socks = []

    def start(self, target_port):
        self.target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
                s = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.socks += [c, s]
            threading.Thread(target=self._requests, args=(c, s), daemon=True).start()
            threading.Thread(target=self._copy, args=(s, c), daemon=True).start()

    @staticmethod
    def _recv(sock, n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _copy(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _requests(self, src, dst):
        try:
            while True:
                size = self._recv(src, 4)
                body = size and self._recv(src, struct.unpack(">i", size)[0])
                if not body:
                    break
                try:
                    self._capture(body)
                except (ValueError, UnicodeDecodeError, struct.error) as e:
                    self.errors.append("unparsable request: %s" % e)
                dst.sendall(size + body)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _capture(self, body):
        r = Reader(body)
        api_key, version = r.int(">h"), r.int(">h")
        if api_key != 0:
            return
        r.int(">i")  # correlation id
        r.string(False)  # client id: never compact
        flexible = version >= 9
        if flexible:
            r.tags()
        if version >= 3:
            r.string(flexible)  # transactional id
        r.int(">h")  # acks
        r.int(">i")  # timeout
        with self.lock:
            self.produce_versions.add(version)
        for _ in range(r.length(flexible, ">i")):
            topic = r.string(flexible)
            for _ in range(r.length(flexible, ">i")):
                r.int(">i")  # partition
                records = r.blob(flexible) or b""
                if flexible:
                    r.tags()
                with self.lock:
                    self.sent[topic] += split_batches(records)
            if flexible:
                r.tags()


# ------------------------------------------------------------- produce

def value_for(codec, i):
    # Compressible (librdkafka sends a batch uncompressed when compressing
    # does not make it smaller), with some bytes that are not UTF-8.
    return b"py %s record %05d \x00\xff\xfe %s" % (codec.encode(), i, b"payload " * 24)


def kcat_round_trip(bs, codec):
    """Produce with kcat -z CODEC and consume with kcat; the expected records."""
    topic = "codec-kcat-" + codec
    # kcat reads text lines: no newlines or tabs in keys and values.
    lines = ["k-%s-%d\tkcat %s record %05d %s" % (codec, i, codec, i, "payload " * 24)
             for i in range(N)]
    p = subprocess.run([KCAT, "-b", bs, "-P", "-t", topic, "-p", "0", "-z", codec, "-K", "\t",
                        "-H", "h1=v1", "-H", "codec=" + codec, "-X", "acks=all",
                        "-X", "linger.ms=20"],
                       input="\n".join(lines) + "\n", text=True, capture_output=True,
                       timeout=60)
    check(p.returncode == 0, "kcat produce %s: %s" % (codec, p.stderr))
    c = subprocess.run([KCAT, "-b", bs, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                        "-q", "-f", "%o\t%k\t%s\t%h\n"], capture_output=True, text=True,
                       timeout=60)
    check(c.returncode == 0, "kcat consume %s: %s" % (codec, c.stderr))
    expect = []
    for i, ln in enumerate(lines):
        k, v = ln.split("\t", 1)
        expect.append((i, k.encode(), v.encode(), [("h1", b"v1"), ("codec", codec.encode())]))
    got = c.stdout.splitlines()
    want = ["%d\t%s\t%s\th1=v1,codec=%s" % (o, k.decode(), v.decode(), codec)
            for o, k, v, _ in expect]
    check(got == want, "kcat %s: consumed %d records, not what was produced (first: %r)"
          % (codec, len(got), got[:1]))
    return topic, expect


def python_round_trip(bs, codec):
    """Produce with confluent-kafka-python (compression.type) and consume."""
    topic = "codec-py-" + codec
    errors = []
    p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 20,
                  "acks": "all"})
    expect = []
    for i in range(N):
        key = b"pk-%d" % i if i % 7 else None
        val = value_for(codec, i)
        hdrs = [("h1", b"v1"), ("i", b"%d" % i), ("bin", b"\x00\xff"), ("nullh", None)]
        p.produce(topic, value=val, key=key, partition=0, headers=hdrs,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
        expect.append((i, key, val, hdrs))
    check(p.flush(30) == 0, "python %s: flush left messages" % codec)
    check(not errors, "python %s: delivery errors %s" % (codec, errors[:3]))

    c = Consumer({"bootstrap.servers": bs, "group.id": "nh-0005", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < N and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        got.append((m.offset(), m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])]))
    c.close()
    check(got == expect, "python %s: consumed %d records, not what was produced" %
          (codec, len(got)))
    return topic, expect


# ---------------------------------------------------------------- check

def field(obj, name):
    if name + "_hex" in obj:
        return bytes.fromhex(obj[name + "_hex"])
    return None if obj[name] is None else obj[name].encode()


def topic_ids(srv):
    ids = {}
    for key, val in srv.meta_range(b"/nuthatch/topics/"):
        name = key[len(b"/nuthatch/topics/"):].decode()
        for line in val.decode().splitlines():
            if line.startswith("id="):
                ids[name] = line[3:]
    return ids


def check_stored(srv, produced, tap):
    # The objects as files: data.dir/objects, or s3rver's directory (NH_BACKEND=s3).
    files = srv.object_files()
    if not check(files, "no flush object on disk"):
        return
    d = subprocess.run([DUMP, "--json", "--records"] + files, capture_output=True, text=True,
                       timeout=120)
    if not check(d.returncode == 0, "nuthatch-dump exited %d: %s" % (d.returncode, d.stderr)):
        return
    lines = [json.loads(ln) for ln in d.stdout.splitlines()]
    ids = topic_ids(srv)
    objects = {}
    for topic, (codec, expect) in produced.items():
        tid = ids.get(topic)
        if not check(tid is not None, "%s: no topic id in the metadata" % topic):
            continue
        batches = [b for b in lines if b["type"] == "batch" and b["topic_id"] == tid]
        records = sorted((r for r in lines if r["type"] == "record" and r["topic_id"] == tid),
                         key=lambda r: r["offset"])
        check(len(batches) >= 1, "%s: no stored batch" % topic)
        for b in batches:
            check(b["codec_bits"] == CODECS[codec] and b["codec"] == codec,
                  "%s: batch at offset %d stored with codec bits %d (%s), not %d (%s)"
                  % (topic, b["base_offset"], b["codec_bits"], b["codec"], CODECS[codec], codec))
            check(b["crc_ok"] and b["error"] is None,
                  "%s: batch at offset %d: crc_ok %s, error %s"
                  % (topic, b["base_offset"], b["crc_ok"], b["error"]))
        check(sum(b["record_count"] for b in batches) == N,
              "%s: %d records in stored batches, %d produced"
              % (topic, sum(b["record_count"] for b in batches), N))
        got = [(r["offset"], field(r, "key"), field(r, "value"),
                [(h["key"], field(h, "value")) for h in r["headers"]]) for r in records]
        check(got == expect, "%s: stored records differ from the produced ones (%d vs %d)"
              % (topic, len(got), len(expect)))
        # Byte for byte what the producer sent.
        stored = []
        for b in batches:
            if b["path"] not in objects:
                with open(b["path"], "rb") as f:
                    objects[b["path"]] = f.read()
            stored.append(batch_body(objects[b["path"]][b["position"]:b["position"] + b["size"]]))
        sent = [batch_body(x) for x in tap.sent.get(topic, [])]
        check(len(sent) >= 1, "%s: the relay saw no Produce batch" % topic)
        # Tell a client that did not compress from a gateway that undid it.
        sent_bits = sorted(set(b[22] & 7 for b in tap.sent.get(topic, [])))  # attributes
        check(sent_bits in ([], [CODECS[codec]]),
              "%s: the producer itself sent batches with codec bits %s, not %d (%s): "
              "librdkafka (2.0.2 here) compresses with gzip, snappy or lz4 only when "
              "ApiVersions lists Produce v0; Kafka 4.0 lists v0-v2 for this reason "
              "(KAFKA-18659) and refuses them in requests"
              % (topic, sent_bits, CODECS[codec], codec))
        check(sorted(stored) == sorted(sent),
              "%s: %d stored batches are not the %d batches the producer sent"
              % (topic, len(stored), len(sent)))
        print("0005: %-17s %3d batches (stored codecs %s), %d records"
              % (topic, len(batches), ",".join(sorted(set(b["codec"] for b in batches))),
                 len(records)))


def main():
    if not os.access(DUMP, os.X_OK):
        print("0005: no nuthatch-dump at %s (build first, or set NUTHATCH_DUMP)" % DUMP)
        return 1
    tap = ProduceTap()
    srv = NuthatchServer(settings={
        "advertised.listeners": "PLAINTEXT://127.0.0.1:%d" % tap.port})
    produced = {}
    try:
        srv.start()
        tap.start(srv.port)
        bs = "127.0.0.1:%d" % tap.port
        for codec in CODECS:
            if KCAT:
                topic, expect = kcat_round_trip(bs, codec)
                produced[topic] = (codec, expect)
            if Producer is not None:
                topic, expect = python_round_trip(bs, codec)
                produced[topic] = (codec, expect)
        status = srv.stop()
        check(status == 0, "nuthatch exited %s after SIGTERM" % status)
        tap.close()
        check(not tap.errors, "relay: %s" % tap.errors[:3])
        print("0005: Produce versions seen: %s" % sorted(tap.produce_versions))
        check_stored(srv, produced, tap)
        if failures:
            print(open(srv.log_path, errors="replace").read()[-3000:], file=sys.stderr)
    finally:
        tap.close()
        srv.cleanup()
    if failures:
        print("0005-stored_codecs: %d failure(s)" % len(failures))
        return 1
    print("0005-stored_codecs: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
