#!/usr/bin/python3
"""0012-bad_input: malformed frames from many connections at once while a
healthy producer keeps working.

A seeded generator (NH_SEED reproduces a run, NH_FRAMES sets the number of
frames, NH_CASE=i runs only frame i) makes at least 10,000 bad frames:
random bytes; negative, zero, short and oversized lengths; frames cut short
(the client then closes its side, or keeps it open so that the gateway's
partial-frame deadline must close it); slow trickles that stop half way;
unknown API keys; unsupported versions; ApiVersions of versions it does not
know (answered in v0 format with error 35 and the API list); huge array
counts inside otherwise valid requests; Produce requests whose RecordBatch
CRC is wrong (CORRUPT_MESSAGE, nothing stored); valid headers over garbage
bodies; bit flips of valid requests; large frames up to 1 MiB; good requests
pipelined ahead of a bad frame (answers may be cut short by the close, but
come in order, and none follows the bad frame), sometimes reset by the
client at once.  They go out over 64 connections at a time.  Each
connection must end with a well-formed answer or with the gateway closing
it, within a bound -- never a hang.

Throughout, a confluent-kafka producer sends one message at a time and
waits for its acknowledgement; none may fail.  Afterwards: the gateway is
alive, its RSS is within 50 MiB (NH_RSS_SLACK_MIB) of what it was once
warmed up, no bad batch was stored (ListOffsets), the healthy topic holds
exactly the acknowledged messages, a kcat round trip works, and SIGTERM
stops the gateway with status 0 and no sanitizer report in its log.
"""

import logging
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kafka_wire as kw  # noqa: E402
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    print("0012: confluent_kafka not installed: skipped")
    sys.exit(77)
if not shutil.which("kcat"):
    print("0012: kcat not installed: skipped")
    sys.exit(77)

WALL_S = 170                   # the whole test, start to stop
PARTIAL_MS = 2000              # --request.partial.timeout.ms
IDLE_MS = 5000                 # --connections.max.idle.ms
MAX_REQ = 4 << 20              # --socket.request.max.bytes
THREADS = 64                   # connections open at once
FRAMES = int(os.environ.get("NH_FRAMES", "12000"))
RSS_SLACK_MIB = int(os.environ.get("NH_RSS_SLACK_MIB", "50"))
ANSWER_S = 10.0                # a whole frame is answered or closed within this
MARGIN_S = 3.0                 # slack on the gateway's timers

T_HEALTHY = "nh-bad-healthy"
T_CRC = "nh-bad-crc"           # only ever sent bad batches: must stay empty
T_GOOD = "nh-bad-good"         # exactly the good batches this test sends
T_MUT = "nh-bad-mutations"     # bit-flipped produces land here (or not)
T_KCAT = "nh-bad-kcat"

# Where a version's request header becomes v2 (flexible), from the message
# definitions of the APIs the gateway handles.
FLEX_FROM = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 18: 3, 19: 5, 20: 4, 32: 4}

failures = []
flock = threading.Lock()


def fail(what):
    with flock:
        failures.append(what)
        if len(failures) <= 40:
            print("FAIL:", what, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- encoding

def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def u32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    if isinstance(s, str):
        s = s.encode()
    return i16(len(s)) + s


def nbytes(b):
    return i32(-1) if b is None else i32(len(b)) + b


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def svarint(n):
    return uvarint((n << 1) ^ (n >> 63))


def cstring(s):
    if isinstance(s, str):
        s = s.encode()
    return uvarint(len(s) + 1) + s


crc32c = kw.crc32c  # lib/kafka_wire.py


def record(delta, value):
    # attributes, timestamp delta, offset delta, null key, value, no headers
    body = (i8(0) + svarint(0) + svarint(delta) + svarint(-1) + svarint(len(value)) + value +
            uvarint(0))
    return svarint(len(body)) + body


def batch(values, ts=None):
    """A RecordBatch v2 of uncompressed records with null keys."""
    ts = int(time.time() * 1000) if ts is None else ts
    recs = b"".join(record(i, v) for i, v in enumerate(values))
    crced = (i16(0) + i32(len(values) - 1) + i64(ts) + i64(ts) + i64(-1) + i16(-1) + i32(-1) +
             i32(len(values)) + recs)
    after_len = i32(-1) + i8(2) + u32(crc32c(crced)) + crced
    return i64(0) + i32(len(after_len)) + after_len


BATCH_CRC_AT = 17        # offset of the crc field in a batch
BATCH_CRCED_FROM = 21    # the CRC covers attributes .. end


def bad_crc_batch(rng):
    """A batch that is well formed but for its CRC: wrong crc field, or a
    flipped bit in a record's value (covered by the CRC, framing intact)."""
    vals = [b"bad-%d-%s" % (i, bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(1, 40))))
            for i in range(rng.randint(1, 5))]
    b = bytearray(batch(vals))
    if rng.random() < 0.5:
        x = struct.unpack_from(">I", b, BATCH_CRC_AT)[0] ^ rng.randint(1, 0xFFFFFFFF)
        struct.pack_into(">I", b, BATCH_CRC_AT, x)
    else:
        # The last value's bytes end 1 byte before the batch ends (headers count).
        last = vals[-1]
        pos = len(b) - 1 - len(last) + rng.randrange(len(last))
        b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def request(api, ver, corr, body, flex=None, client=b"nh-bad-input"):
    """A whole frame: length, request header v1 (v2 when flexible), body."""
    if flex is None:
        flex = api in FLEX_FROM and ver >= FLEX_FROM[api]
    hdr = i16(api) + i16(ver) + i32(corr) + string(client) + (uvarint(0) if flex else b"")
    msg = hdr + body
    return i32(len(msg)) + msg


def produce_v3(topics, acks=-1, timeout_ms=10000):
    """topics: [(name, [(partition, records)])]"""
    out = string(None) + i16(acks) + i32(timeout_ms) + i32(len(topics))
    for name, parts in topics:
        out += string(name) + i32(len(parts))
        for idx, recs in parts:
            out += i32(idx) + nbytes(recs)
    return out


def list_offsets_v1(topics):
    out = i32(-1) + i32(len(topics))
    for name, parts in topics:
        out += string(name) + i32(len(parts))
        for idx in parts:
            out += i32(idx) + i64(-1)
    return out


def metadata_v1(names):
    return i32(len(names)) + b"".join(string(n) for n in names)


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s.decode(errors="replace")

    def done(self):
        return self.pos == len(self.buf)


def parse_produce_v3(payload):
    """[(topic, partition, error, base offset)] of a Produce v3 response."""
    r = Reader(payload)
    out = []
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, base = r.i32(), r.i16(), r.i64()
            r.i64()  # log append time
            out.append((name, idx, err, base))
    r.i32()  # throttle
    if not r.done():
        raise ValueError("trailing bytes")
    return out


def parse_api_versions_v0(payload):
    """(error, [(key, min, max)]), insisting on the exact v0 layout."""
    r = Reader(payload)
    err, n = r.i16(), r.i32()
    if n <= 0 or n > 1000:
        raise ValueError("api count %d" % n)
    keys = [(r.i16(), r.i16(), r.i16()) for _ in range(n)]
    if not r.done():
        raise ValueError("%d bytes after the list (v0 has no throttle field)"
                         % (len(payload) - r.pos))
    return err, keys


# ---------------------------------------------------------------- sockets

class Conn:
    """A client socket that tells answers from closes, with deadlines."""

    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=5)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        """False when the gateway had already closed."""
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def poll(self, timeout):
        """Read what arrives within @timeout; True when the peer closed."""
        if self.closed:
            return True
        r, _, _ = select.select([self.s], [], [], max(0.0, timeout))
        if r:
            try:
                d = self.s.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                d = b""
            if not d:
                self.closed = True
            self.buf += d
        return self.closed

    def frame(self):
        """The first whole response frame received, or None."""
        if len(self.buf) < 4:
            return None
        n = struct.unpack_from(">i", self.buf)[0]
        if n < 4 or len(self.buf) < 4 + n:
            return None
        return bytes(self.buf[4:4 + n])

    def wait(self, deadline, want_frame=True):
        """Until a whole frame (when @want_frame) or a close, or the deadline.
        Returns "frame", "closed" or "timeout"."""
        while True:
            if want_frame and self.frame() is not None:
                return "frame"
            if self.closed:
                return "closed"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            self.poll(min(left, 0.5))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def roundtrip(addr, frame_bytes, timeout=ANSWER_S):
    c = Conn(addr)
    try:
        c.send(frame_bytes)
        if c.wait(time.monotonic() + timeout) != "frame":
            return None
        return c.frame()
    finally:
        c.close()


# ---------------------------------------------------------------- the generator

class Case:
    """One bad frame: bytes to send (all at once, or trickled), whether to
    keep the write side open afterwards, and what must happen."""

    def __init__(self, kind, data, expect, hold=True, corr=None, trickle=None, check=None,
                 reset=False):
        self.kind = kind
        self.data = data
        # "close" (at once), "partial" (by request.partial.timeout.ms), "idle"
        # (by connections.max.idle.ms), "answer" (with @check), "answer_or_close",
        # "answers_then_close" (answers to a prefix of @corr, in order).
        self.expect = expect
        self.hold = hold          # keep our side open (else shut it down after sending)
        self.corr = corr          # correlation id an answer must carry (a list: several)
        self.trickle = trickle    # (bytes per step, seconds per step, steps) or None
        self.check = check        # f(payload) -> None or a complaint, for "answer"
        self.reset = reset        # reset the connection right after sending


def expect_for_bytes(data, hold):
    """What the gateway must do with @data sent on a fresh connection."""
    if len(data) < 4:
        return "idle" if hold else "close"
    n = struct.unpack_from(">i", data)[0]
    if n < 8 or n > MAX_REQ:
        return "close"
    if len(data) - 4 < n:
        return "partial" if hold else "close"
    return "answer_or_close"


class Gen:
    def __init__(self, seed, api_list, stats):
        self.seed = seed
        self.api_list = api_list  # [(key, min, max)] as the gateway advertises
        self.apis = {k: (lo, hi) for k, lo, hi in api_list}
        self.stats = stats        # good batches stored are counted here
        self.kinds = [
            ("random_bytes", 10, self.random_bytes),
            ("bad_length", 10, self.bad_length),
            ("truncated", 10, self.truncated),
            ("trickle", 1, self.trickle),
            ("unknown_api", 8, self.unknown_api),
            ("unsupported_version", 8, self.unsupported_version),
            ("api_versions_unknown", 6, self.api_versions_unknown),
            ("huge_count", 12, self.huge_count),
            ("bad_crc", 8, self.bad_crc),
            ("garbage_body", 15, self.garbage_body),
            ("mutated", 12, self.mutated),
            ("pipelined", 6, self.pipelined),
            ("big", 1, self.big),
        ]
        self.total_w = sum(w for _, w, _ in self.kinds)

    def case(self, i):
        rng = random.Random("%d:%d" % (self.seed, i))
        corr = rng.randint(0, 0x7FFFFFFF)
        x = rng.uniform(0, self.total_w)
        for name, w, f in self.kinds:
            if x < w:
                break
            x -= w
        return f(rng, corr)

    # -- valid requests, the material of truncations and mutations

    def valid_request(self, rng, corr):
        c = rng.randrange(6)
        if c == 0:
            return request(3, 1, corr, metadata_v1([T_MUT, "nh-bad-x%d" % rng.randrange(100)]))
        if c == 1:
            recs = batch([b"m" * rng.randrange(1, 200)])
            return request(0, 3, corr, produce_v3([(T_MUT, [(rng.randrange(2), recs)])]))
        if c == 2:
            return request(2, 1, corr, list_offsets_v1([(T_MUT, [0, 1])]))
        if c == 3:
            return request(18, 3, corr, cstring("nh-bad") + cstring("1.0") + uvarint(0))
        if c == 4:
            # Metadata v12: compact topic array of (topic id, name, tags).
            return request(3, 12, corr, uvarint(2) + bytes(16) + cstring(T_MUT) + uvarint(0) +
                           b"\x00\x00" + uvarint(0))
        # OffsetFetch v1: group, topics [name, partitions [int32]].
        return request(9, 1, corr, string("g%d" % rng.randrange(10)) + i32(1) + string(T_MUT) +
                       i32(2) + i32(0) + i32(1))

    # -- the kinds

    def random_bytes(self, rng, corr):
        if rng.random() < 0.3:
            # A plausible length, then noise.
            n = rng.randint(8, 300)
            body = rng.randbytes(rng.choice([n, n, rng.randint(0, n)]))
            data = i32(n) + body
        else:
            data = rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, 8, rng.randint(0, 600)]))
        hold = rng.random() < 0.5
        return Case("random_bytes", data, expect_for_bytes(data, hold), hold=hold)

    def bad_length(self, rng, corr):
        n = rng.choice([-1, -2, -0x80000000, rng.randint(-0x80000000, -1), 0, 1, 2, 3, 4, 5, 6, 7,
                        MAX_REQ + 1, MAX_REQ + rng.randint(2, 1 << 20), 0x7FFFFFFF,
                        rng.randint(MAX_REQ + 1, 0x7FFFFFFF)])
        tail = rng.randbytes(rng.choice([0, 4, 16, rng.randint(0, 200)]))
        data = i32(n) + tail
        hold = rng.random() < 0.5
        return Case("bad_length", data, expect_for_bytes(data, hold), hold=hold)

    def truncated(self, rng, corr):
        full = self.valid_request(rng, corr)
        if rng.random() < 0.3:
            # Claim more than will ever come (up to the largest frame allowed).
            n = rng.choice([len(full) - 4 + rng.randint(1, 1000), MAX_REQ, rng.randint(8, MAX_REQ)])
            full = i32(n) + full[4:]
            cut = rng.randint(4, len(full))
        else:
            cut = rng.randint(0, len(full) - 1)
        data = full[:cut]
        hold = rng.random() < 0.25
        return Case("truncated", data, expect_for_bytes(data, hold), hold=hold)

    def trickle(self, rng, corr):
        full = self.valid_request(rng, corr)
        if len(full) < 40:
            full = i32(len(full) - 4 + 200) + full[4:]  # more is promised than sent
        stop = rng.randint(8, len(full) // 2)
        step = rng.randint(1, 3)
        every = rng.uniform(0.05, 0.15)
        steps = (stop + step - 1) // step
        return Case("trickle", full[:stop], "partial", trickle=(step, every, steps))

    def unknown_api(self, rng, corr):
        known = set(self.apis)
        key = rng.choice([rng.randint(-0x8000, -1), rng.randint(0, 80), rng.randint(81, 0x7FFF),
                          0x7FFF, -1])
        while key in known:
            key = rng.randint(0, 80)
        body = rng.randbytes(rng.randint(0, 64))
        return Case("unknown_api", request(key, rng.randint(0, 15), corr, body, flex=False),
                    "answer_or_close", corr=corr)

    def unsupported_version(self, rng, corr):
        key = rng.choice([k for k in self.apis if k != 18])
        lo, hi = self.apis[key]
        choices = [rng.randint(hi + 1, hi + 20), rng.randint(-0x8000, -1), 0x7FFF]
        if lo > 0:
            choices.append(rng.randint(0, lo - 1))
        ver = rng.choice(choices)
        body = rng.randbytes(rng.randint(0, 64))
        return Case("unsupported_version", request(key, ver, corr, body), "answer_or_close",
                    corr=corr)

    def api_versions_unknown(self, rng, corr):
        hi = self.apis[18][1]
        ver = rng.choice([99, 99, hi + 1, rng.randint(hi + 1, 0x7FFF), 0x7FFF])
        flex = rng.random() < 0.5  # what a newer client sends: header v2
        body = rng.choice([b"", cstring("nh-bad") + cstring("9.9") + uvarint(0),
                           rng.randbytes(rng.randint(0, 50))])
        data = request(18, ver, corr, body, flex=flex)
        want = self.api_list

        def check(payload):
            return check_api_versions_unsupported(payload, want)

        return Case("api_versions_unknown", data, "answer", corr=corr, check=check)

    def huge_count(self, rng, corr):
        n = rng.choice([0x7FFFFFFF, 0x7FFFFFFE, 1 << 30, 1 << 24, 65536, 1000, -2, -0x80000000])
        tmpl = rng.randrange(12)
        flex = False
        if tmpl == 0:      # Metadata v1 topics
            api, ver, pre, post = 3, 1, b"", b""
        elif tmpl == 1:    # Metadata v4 topics, then AllowAutoTopicCreation
            api, ver, pre, post = 3, 4, b"", b"\x01"
        elif tmpl == 2:    # Produce v3 topics
            api, ver, pre, post = 0, 3, string(None) + i16(1) + i32(1000), b""
        elif tmpl == 3:    # Produce v3 partitions of one topic
            api, ver, post = 0, 3, b""
            pre = string(None) + i16(1) + i32(1000) + i32(1) + string(T_MUT)
        elif tmpl == 4:    # Produce v3 records length
            api, ver = 0, 3
            pre = string(None) + i16(1) + i32(1000) + i32(1) + string(T_MUT) + i32(1) + i32(0)
            post = batch([b"x"])
            n = rng.choice([0x7FFFFFFF, 1 << 30, len(post) + rng.randint(1, 100), -2])
        elif tmpl == 5:    # ListOffsets v1 topics
            api, ver, pre, post = 2, 1, i32(-1), b""
        elif tmpl == 6:    # Fetch v4 topics
            api, ver, pre, post = 1, 4, i32(-1) + i32(100) + i32(1) + i32(1 << 20) + i8(0), b""
        elif tmpl == 7:    # OffsetFetch v1 topics
            api, ver, pre, post = 9, 1, string("g"), b""
        elif tmpl == 8:    # DescribeConfigs v0 resources
            api, ver, pre, post = 32, 0, b"", b""
        elif tmpl == 9:    # Metadata v1 with a topic name that claims 32767 bytes
            api, ver, pre, post = 3, 1, i32(1), b""
            n = None
        elif tmpl == 10:   # Metadata v9: compact array count
            api, ver, pre, post, flex = 3, 9, b"", b"\x00\x00\x00" + uvarint(0), True
        else:              # Produce v9: compact topic array count
            api, ver, post, flex = 0, 9, uvarint(0), True
            pre = uvarint(0) + i16(1) + i32(1000)
        if n is None:
            count = i16(0x7FFF)
        elif flex:
            count = rng.choice([uvarint(n + 1 if n >= 0 else 0x80000000), uvarint(0xFFFFFFFF),
                                b"\xff" * rng.randint(5, 12) + b"\x01", b"\xff\xff\xff"])
        else:
            count = i32(n)
        tail = rng.choice([b"", rng.randbytes(rng.randint(1, 40)),
                           b"".join(string("nh-bad-t%d" % k) for k in range(3))])
        data = request(api, ver, corr, pre + count + tail + post, flex=flex)
        return Case("huge_count", data, "answer_or_close", corr=corr)

    def bad_crc(self, rng, corr):
        parts = [(0, bad_crc_batch(rng))]
        topics = [(T_CRC, parts)]
        good = rng.random() < 0.3
        if good:  # with a good batch in the same request: that one is stored
            topics.append((T_GOOD, [(0, batch([b"good-%d" % corr]))]))
            rng.shuffle(topics)
        data = request(0, 3, corr, produce_v3(topics, acks=rng.choice([1, -1])))
        st = self.stats

        def check(payload):
            try:
                res = parse_produce_v3(payload[4:])
            except (ValueError, struct.error) as e:
                return "unreadable Produce v3 response: %s" % e
            seen = {}
            for name, idx, err, base in res:
                seen[name] = err
            if seen.get(T_CRC) != 2:
                return "bad CRC: error %s, not CORRUPT_MESSAGE (2): %s" % (seen.get(T_CRC), res)
            if good:
                if seen.get(T_GOOD) != 0:
                    return "good batch next to a bad one: error %s" % seen.get(T_GOOD)
                with st.lock:
                    st.good_stored += 1
            return None

        return Case("bad_crc", data, "answer", corr=corr, check=check)

    def garbage_body(self, rng, corr):
        key = rng.choice(sorted(self.apis))
        lo, hi = self.apis[key]
        ver = rng.randint(lo, hi)
        body = rng.randbytes(rng.choice([0, 1, 2, 7, rng.randint(0, 300)]))
        if rng.random() < 0.3:  # noise that starts like a count
            body = i32(rng.choice([0, 1, 2, 5, -1])) + body
        return Case("garbage_body", request(key, ver, corr, body), "answer_or_close", corr=corr)

    def mutated(self, rng, corr):
        full = bytearray(self.valid_request(rng, corr))
        op = rng.randrange(4)
        if op <= 1:    # flip bits after the api key and version
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(8, len(full))
                full[pos] ^= 1 << rng.randrange(8)
        elif op == 2:  # overwrite a run with 0xff or 0x00 or 0x7f
            pos = rng.randrange(8, len(full))
            run = rng.randint(1, 8)
            run = len(full[pos:pos + run])
            full[pos:pos + run] = bytes([rng.choice([0, 0xFF, 0x7F, 0x80])]) * run
        else:          # a whole frame whose body stops early, or has extra bytes
            body = bytes(full[4:])
            if rng.random() < 0.5:
                body = body[:rng.randint(8, len(body))]
            else:
                body += rng.randbytes(rng.randint(1, 30))
            full = bytearray(i32(len(body)) + body)
        data = bytes(full)
        return Case("mutated", data, "answer_or_close", corr=struct.unpack_from(">i", data, 8)[0])


    def big(self, rng, corr):
        """Large frames (up to 1 MiB), sent whole: noise after a valid header,
        or requests with very many (mostly unknown) topics or partitions.
        Larger ones only measure how much the allocator keeps, not the
        gateway's use."""
        c = rng.randrange(4)
        if c == 0:
            key = rng.choice(sorted(self.apis))
            ver = rng.randint(*self.apis[key])
            size = rng.choice([1 << 16, 1 << 20, rng.randint(1 << 16, 1 << 20)])
            data = request(key, ver, corr, rng.randbytes(size))
        else:
            # Blocks of 1000 entries, repeated (building each entry would be slow here).
            reps = rng.randint(10, 60)
            if c == 1:
                names = ["nh-bad-x%d" % k for k in range(999)] + [T_MUT]
                body = i32(1000 * reps) + b"".join(string(n) for n in names) * reps
                data = request(3, 1, corr, body)
            elif c == 2:
                parts = b"".join(i32(k % 11 - 5) + i32(-1) for k in range(1000))
                data = request(0, 3, corr, string(None) + i16(1) + i32(1000) + i32(1) +
                               string(T_MUT) + i32(1000 * reps) + parts * reps)
            else:
                parts = b"".join(i32(k % 5) + i64(-1) for k in range(1000))
                data = request(2, 1, corr, i32(-1) + i32(1) + string(T_MUT) + i32(1000 * reps) +
                               parts * reps)
        return Case("big", data, "answer_or_close", corr=corr)

    def pipelined(self, rng, corr):
        """Good requests (one may wait on storage or a timer), then a frame
        that must close the connection, then more: the answers that come are
        those of the good ones, in order, and nothing after the bad one.  Or
        the client resets the connection at once."""
        data, corrs = b"", []
        for k in range(rng.randint(1, 4)):
            c = (corr + k) & 0x7FFFFFFF
            corrs.append(c)
            r = rng.randrange(4)
            if r == 0:
                data += request(18, rng.randint(0, 2), c, b"")
            elif r == 1:
                data += request(3, 1, c, metadata_v1([T_MUT]))
            elif r == 2:
                recs = batch([b"p%d" % c])
                data += request(0, 3, c, produce_v3([(T_MUT, [(rng.randrange(2), recs)])],
                                                    acks=rng.choice([1, -1])))
            else:  # Fetch v4 that waits for more than will come
                data += request(1, 4, c, i32(-1) + i32(rng.randint(50, 500)) + i32(1 << 30) +
                                i32(1 << 20) + i8(0) + i32(1) + string(T_MUT) + i32(1) + i32(0) +
                                i64(0) + i32(1 << 20))
        bad = rng.choice([self.unknown_api, self.unsupported_version, self.bad_length])(rng, corr)
        if bad.expect != "close" and bad.kind == "bad_length":
            bad.data = i32(-1)
        data += bad.data
        if rng.random() < 0.5:  # never to be read
            data += request(18, 0, (corr + 100) & 0x7FFFFFFF, b"")
        case = Case("pipelined", data, "answers_then_close", corr=corrs,
                    reset=rng.random() < 0.25)
        # A well-framed bad request closes the connection only after the
        # requests before it are answered (as Kafka does); a bad length
        # breaks the framing and closes at once.
        case.all_answers = bad.kind != "bad_length" and not case.reset
        return case


def check_api_versions_unsupported(payload, want):
    try:
        err, keys = parse_api_versions_v0(payload[4:])
    except (ValueError, struct.error) as e:
        return "ApiVersions of an unknown version: not a v0 answer: %s" % e
    if err != 35:
        return "ApiVersions of an unknown version: error %d, not 35" % err
    if want is not None and sorted(keys) != want:
        return "ApiVersions of an unknown version: list %s differs from v0's %s" % (keys, want)
    return None


# ---------------------------------------------------------------- running cases

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.frames = 0
        self.conns = 0
        self.open_now = 0
        self.open_max = 0
        self.good_stored = 0
        self.pipe_requests = 0   # good requests ahead of a bad frame
        self.pipe_answered = 0   # ... answered before the close
        self.by_kind = {}  # kind -> {outcome: n}
        self.partial_close = []  # seconds from length to close

    def count(self, kind, outcome):
        with self.lock:
            d = self.by_kind.setdefault(kind, {})
            d[outcome] = d.get(outcome, 0) + 1


def run_case(addr, i, case, st, seed):
    where = "frame %d (%s; NH_SEED=%d NH_CASE=%d)" % (i, case.kind, seed, i)
    c = Conn(addr)
    with st.lock:
        st.conns += 1
        st.open_now += 1
        st.open_max = max(st.open_max, st.open_now)
    try:
        t0 = time.monotonic()
        t_len = None
        if case.trickle:
            step, every, steps = case.trickle
            sent = 0
            for k in range(steps):
                if not c.send(case.data[sent:sent + step]):
                    break
                sent += step
                if t_len is None and sent >= 4:
                    t_len = time.monotonic()
                if c.poll(every):
                    break
        else:
            c.send(case.data)
            t_len = time.monotonic()
            if case.reset:
                # Abort: RST with requests in flight; nothing to observe here.
                c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                st.count(case.kind, "reset by client")
                return
            if not case.hold:
                try:
                    c.s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if case.expect == "close":
            bound = MARGIN_S
        elif case.expect == "partial":
            bound = PARTIAL_MS / 1000 + MARGIN_S
        elif case.expect == "idle":
            bound = IDLE_MS / 1000 + MARGIN_S
        else:
            # An answered request that never gets an answer (acks=0) is left
            # to the idle timer.
            bound = max(ANSWER_S, IDLE_MS / 1000 + MARGIN_S)
        if case.expect == "answers_then_close":
            if c.wait(t0 + ANSWER_S, want_frame=False) == "timeout":
                fail("%s: not closed within %.1f s" % (where, ANSWER_S))
                st.count(case.kind, "hang")
                return
            got = []
            buf = bytes(c.buf)
            while len(buf) >= 8:
                n = struct.unpack_from(">i", buf)[0]
                if n < 4 or len(buf) < 4 + n:
                    break
                got.append(struct.unpack_from(">i", buf, 4)[0])
                buf = buf[4 + n:]
            if buf or got != case.corr[:len(got)]:
                fail("%s: answers %s (and %d stray bytes) to requests %s"
                     % (where, got, len(buf), case.corr))
            elif getattr(case, "all_answers", False) and got != case.corr:
                fail("%s: closed after answering %s of the requests %s before the bad one"
                     % (where, got, case.corr))
            st.count(case.kind, "closed")
            with st.lock:
                st.pipe_answered += len(got)
                st.pipe_requests += len(case.corr)
            return
        want_frame = case.expect in ("answer", "answer_or_close")
        got = c.wait(t0 + bound, want_frame=want_frame)
        t_end = time.monotonic()
        if got == "timeout":
            extra = " (got %d bytes)" % len(c.buf) if c.buf else ""
            fail("%s: neither answered nor closed within %.1f s (expected %s)%s"
                 % (where, bound, case.expect, extra))
            st.count(case.kind, "hang")
            return
        if got == "closed" and c.buf and case.expect != "answer":
            # Bytes then a close: an answer must still be whole.
            if c.frame() is None:
                fail("%s: %d bytes of an incomplete answer, then closed" % (where, len(c.buf)))
        if case.expect in ("close", "partial", "idle"):
            if c.buf:
                fail("%s: answered %r where a close was due" % (where, bytes(c.buf[:32])))
            if case.expect == "partial" and t_len is not None and not c.buf:
                with st.lock:
                    st.partial_close.append(t_end - t_len)
            st.count(case.kind, "closed")
            return
        if got == "closed" and c.frame() is None:
            if case.expect == "answer":
                fail("%s: closed without the answer due" % where)
            st.count(case.kind, "closed")
            return
        payload = c.frame()
        corr = struct.unpack_from(">i", payload)[0] if len(payload) >= 4 else None
        if case.corr is not None and corr != case.corr:
            fail("%s: answer carries correlation id %s, not %d" % (where, corr, case.corr))
        if case.check:
            why = case.check(payload)
            if why:
                fail("%s: %s" % (where, why))
        st.count(case.kind, "answered")
    except OSError as e:
        fail("%s: %s" % (where, e))
    finally:
        c.close()
        with st.lock:
            st.open_now -= 1
            st.frames += 1


# ---------------------------------------------------------------- dedicated checks

def api_versions(addr):
    """The v0 list, checked to be a proper answer."""
    payload = roundtrip(addr, request(18, 0, 7, b""))
    if payload is None:
        raise RuntimeError("no answer to ApiVersions v0")
    err, keys = parse_api_versions_v0(payload[4:])
    if err != 0 or struct.unpack_from(">i", payload)[0] != 7:
        raise RuntimeError("ApiVersions v0: error %d" % err)
    return sorted(keys)


def check_api_versions_v99(addr, want):
    corr = 0x1234567
    frame = request(18, 99, corr, b"")
    payload = roundtrip(addr, frame)
    if payload is None:
        fail("ApiVersions v99: no answer")
        return
    if struct.unpack_from(">i", payload)[0] != corr:
        fail("ApiVersions v99: correlation id %d" % struct.unpack_from(">i", payload)[0])
    # The exact layout: corr, int16 35, int32 n, n x (key, min, max), nothing else.
    n = struct.unpack_from(">i", payload, 6)[0] if len(payload) >= 10 else -1
    if n <= 0 or len(payload) != 4 + 2 + 4 + 6 * n:
        fail("ApiVersions v99: %d bytes for %d entries" % (len(payload), n))
    why = check_api_versions_unsupported(payload, want)
    if why:
        fail(why)
    # The same from a client that sends header v2, as newer clients do.
    payload = roundtrip(addr, request(18, 99, corr + 1, cstring("x") + cstring("1") + uvarint(0),
                                      flex=True))
    why = "no answer" if payload is None else check_api_versions_unsupported(payload, want)
    if why:
        fail("ApiVersions v99 with header v2: %s" % why)


def produce(addr, topics, corr=42):
    payload = roundtrip(addr, request(0, 3, corr, produce_v3(topics)))
    if payload is None:
        return None
    return parse_produce_v3(payload[4:])


def high_watermarks(addr, topics):
    """{(topic, partition): (error, offset)} by ListOffsets v1, latest."""
    payload = roundtrip(addr, request(2, 1, 77, list_offsets_v1(topics)))
    if payload is None:
        raise RuntimeError("no answer to ListOffsets")
    r = Reader(payload[4:])
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err = r.i32(), r.i16()
            r.i64()
            out[(name, idx)] = (err, r.i64())
    return out


def check_crc_basics(addr, st):
    """A good raw batch is stored (the encoder is right); a bad CRC is
    refused with CORRUPT_MESSAGE next to a good partition that is stored."""
    res = produce(addr, [(T_GOOD, [(0, batch([b"first good"]))])])
    if not res or res[0][2] != 0:
        fail("a good batch from this test's encoder was refused: %s" % res)
        return
    st.good_stored += 1
    rng = random.Random(1)
    res = produce(addr, [(T_CRC, [(0, bad_crc_batch(rng))]), (T_GOOD, [(0, batch([b"good 2"]))])])
    errs = {name: err for name, _, err, _ in res or []}
    if errs.get(T_CRC) != 2 or errs.get(T_GOOD) != 0:
        fail("bad CRC next to a good batch: %s" % res)
    elif errs.get(T_GOOD) == 0:
        st.good_stored += 1


def check_huge_counts(addr):
    """Metadata v1 and Produce v3 with 2^31-1 topics: refused at once."""
    for name, corr, frame in [
        ("Metadata v1", 5, request(3, 1, 5, i32(0x7FFFFFFF) + string(T_MUT))),
        ("Produce v3", 6, request(0, 3, 6, string(None) + i16(1) + i32(1000) + i32(0x7FFFFFFF) +
                                  string(T_MUT))),
    ]:
        c = Conn(addr)
        try:
            c.send(frame)
            got = c.wait(time.monotonic() + ANSWER_S)
            if got == "timeout":
                fail("%s with 2^31-1 topics: no answer and no close" % name)
            elif got == "frame" and struct.unpack_from(">i", c.frame())[0] != corr:
                fail("%s with 2^31-1 topics: wrong correlation id" % name)
        finally:
            c.close()


def check_partial_deadline(addr, mode, out):
    """The partial-frame deadline closes a connection whose frame is still
    coming: a byte every 100 ms ("steady", which a read timeout would never
    catch), one that stops half way ("stop"), or only part of the length
    ("length": left to connections.max.idle.ms)."""
    c = Conn(addr)
    try:
        t0 = time.monotonic()
        if mode == "length":
            c.send(b"\x00\x00")
            c.wait(t0 + IDLE_MS / 1000 + MARGIN_S, want_frame=False)
            lo, hi = IDLE_MS / 1000 - 0.5, IDLE_MS / 1000 + MARGIN_S
        else:
            c.send(i32(2000))
            t0 = time.monotonic()
            for k in range(1000 if mode == "steady" else 10):
                if not c.send(b"\x00") or c.poll(0.1):
                    break
            c.wait(t0 + PARTIAL_MS / 1000 + MARGIN_S, want_frame=False)
            lo, hi = PARTIAL_MS / 1000 - 0.3, PARTIAL_MS / 1000 + MARGIN_S
        took = time.monotonic() - t0
        out[mode] = took
        if not c.closed or not lo <= took <= hi:
            fail("partial frame (%s): %s after %.2f s, expected a close within [%.1f, %.1f] s"
                 % (mode, "closed" if c.closed else "still open", took, lo, hi))
    finally:
        c.close()


# ---------------------------------------------------------------- healthy producer and gateway

class Healthy(threading.Thread):
    """One message at a time, each waited for; every failure counts."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        self.errors = []
        self.max_latency = 0.0
        self.log = logging.getLogger("0012.rdkafka")

    def run(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 0,
                      "message.timeout.ms": 30000, "log.connection.close": False,
                      "enable.idempotence": False},
                     logger=self.log)
        try:
            self.produce_all(p)
        except Exception as e:  # noqa: BLE001 -- any exception is a failure to report
            self.failed += 1
            self.errors.append(repr(e))

    def produce_all(self, p):
        n = 0
        while not self.stop.is_set():
            res = []
            t0 = time.monotonic()
            p.produce(T_HEALTHY, value=b"healthy-%d" % n, partition=0,
                      on_delivery=lambda err, msg: res.append(err))
            p.flush(35)
            self.max_latency = max(self.max_latency, time.monotonic() - t0)
            if res and res[0] is None:
                self.ok += 1
            else:
                self.failed += 1
                self.errors.append(res[0] if res else "no delivery report")
            n += 1
            time.sleep(0.01)
        p.flush(35)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Monitor(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.rss_max = 0
        self.fds_max = 0

    def run(self):
        while not self.stop.wait(0.2):
            try:
                self.rss_max = max(self.rss_max, rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self.fds_max = max(self.fds_max, open_fds(self.pid))


def kcat_roundtrip(bootstrap):
    msg = "after the storm %d" % os.getpid()
    p = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", T_KCAT, "-p", "0"], input=msg.encode(),
                       capture_output=True, timeout=30)
    if p.returncode != 0:
        return "kcat -P: %s" % p.stderr.decode(errors="replace")
    c = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", T_KCAT, "-p", "0", "-o", "beginning",
                        "-c", "1", "-e", "-q"], capture_output=True, timeout=30)
    if c.returncode != 0 or c.stdout.decode().strip() != msg:
        return "kcat -C: rc %d, %r, %s" % (c.returncode, c.stdout,
                                           c.stderr.decode(errors="replace"))
    return None


def main():
    seed = int(os.environ.get("NH_SEED", str(random.SystemRandom().randint(1, 2**31))))
    only = os.environ.get("NH_CASE")
    print("0012: seed %d (NH_SEED=%d reproduces), %d frames over %d connections at a time"
          % (seed, seed, FRAMES, THREADS), flush=True)
    t_start = time.monotonic()
    settings = {"request.partial.timeout.ms": PARTIAL_MS, "connections.max.idle.ms": IDLE_MS,
                "socket.request.max.bytes": MAX_REQ, "message.max.bytes": 1 << 20,
                "auto.create.topics.enable": "false"}
    # Under AddressSanitizer the quarantine of freed memory (256 MiB by
    # default) would count as growth; a small one keeps the RSS bound useful.
    os.environ.setdefault("ASAN_OPTIONS", "quarantine_size_mb=16")
    srv = NuthatchServer(settings=settings, keep=True)  # the log is read after the stop
    keep = os.environ.get("NH_KEEP") == "1"

    def watchdog():
        print("FAIL: 0012 did not finish within %d s" % WALL_S, file=sys.stderr, flush=True)
        try:
            print(open(srv.log_path, errors="replace").read()[-3000:], file=sys.stderr)
        except OSError:
            pass
        srv.cleanup()
        if not keep:
            shutil.rmtree(srv.dir, ignore_errors=True)
        os._exit(1)

    dog = threading.Timer(WALL_S, watchdog)
    dog.daemon = True
    dog.start()
    try:
        storm(srv, seed, only, t_start)
    finally:
        dog.cancel()
        srv.cleanup()
        log = open(srv.log_path, errors="replace").read() if srv.dir else ""
        if not keep and srv.dir:
            shutil.rmtree(srv.dir, ignore_errors=True)
    if srv.exit_status != 0:
        fail("the gateway exited with status %s on SIGTERM" % srv.exit_status)
    for mark in ("Sanitizer", "runtime error:", " ERROR "):
        if mark in log:
            at = log.index(mark)
            fail("the gateway log reports %r:\n%s" % (mark, log[max(0, at - 200):at + 3000]))
    if failures:
        print("--- last lines of the gateway log\n%s" % log[-3000:], file=sys.stderr)
        print("0012: %d failures (NH_SEED=%d)" % (len(failures), seed), file=sys.stderr)
        return 1
    print("0012: ok (%.1f s)" % (time.monotonic() - t_start))
    return 0


def storm(srv, seed, only, t_start):
    """Everything between the gateway's start and its stop."""
    with srv:
        addr = ("127.0.0.1", srv.port)
        pid = srv.proc.pid
        quiet = logging.getLogger("0012.rdkafka")
        quiet.setLevel(logging.WARNING)  # not the idle closes of bootstrap connections
        admin = AdminClient({"bootstrap.servers": srv.bootstrap, "logger": quiet})
        fs = admin.create_topics([NewTopic(T_HEALTHY, 1, 1), NewTopic(T_CRC, 1, 1),
                                  NewTopic(T_GOOD, 1, 1), NewTopic(T_MUT, 2, 1),
                                  NewTopic(T_KCAT, 1, 1)], operation_timeout=10)
        for f in fs.values():
            f.result(10)
        del admin, fs

        want = api_versions(addr)
        st = Stats()
        gen = Gen(seed, want, st)

        healthy = Healthy(srv.bootstrap)
        healthy.start()
        t_warm = time.monotonic()
        while ((healthy.ok < 200 or time.monotonic() - t_warm < 3) and
               time.monotonic() - t_warm < 30):
            time.sleep(0.1)
        if healthy.ok < 200:
            fail("the healthy producer got only %d acknowledgements in 30 s" % healthy.ok)
        rss0 = rss_kib(pid)
        mon = Monitor(pid)
        mon.start()

        if only is None:
            check_api_versions_v99(addr, want)
            check_crc_basics(addr, st)
            check_huge_counts(addr)

        # The timer checks run beside the storm.
        partial = {}
        timers = [threading.Thread(target=check_partial_deadline, args=(addr, m, partial))
                  for m in (["steady", "stop", "length"] if only is None else [])]
        indices = [int(only)] if only is not None else list(range(FRAMES))
        nxt = iter(indices)
        nlock = threading.Lock()
        barrier = threading.Barrier(min(THREADS, len(indices)))

        def worker():
            # All start together, so that THREADS connections are open at once.
            try:
                barrier.wait(20)
            except threading.BrokenBarrierError:
                pass
            while time.monotonic() - t_start < WALL_S - 40:
                with nlock:
                    i = next(nxt, None)
                if i is None:
                    return
                run_case(addr, i, gen.case(i), st, seed)

        workers = [threading.Thread(target=worker, daemon=True)
                   for _ in range(min(THREADS, len(indices)))]
        t_storm = time.monotonic()
        for t in timers + workers:
            t.start()
        for t in timers + workers:
            t.join()
        storm_s = time.monotonic() - t_storm
        if only is None and st.open_max < 50:
            fail("only %d connections were open at once" % st.open_max)
        if st.frames < len(indices):
            fail("only %d of %d frames sent in the time allowed" % (st.frames, len(indices)))

        healthy.stop.set()
        healthy.join(40)
        mon.stop.set()
        alive = srv.proc.poll() is None
        if not alive:
            fail("the gateway died (status %s)" % srv.proc.returncode)
        else:
            # Let the closes of the last connections land, then measure.
            time.sleep(1.0)
            rss1 = rss_kib(pid)
            fds1 = open_fds(pid)
        if healthy.failed or healthy.is_alive():
            fail("healthy producer: %d failures (%s)" % (healthy.failed, healthy.errors[:3]))
        if alive:
            hw = high_watermarks(addr, [(T_CRC, [0]), (T_GOOD, [0]), (T_HEALTHY, [0])])
            if hw.get((T_CRC, 0)) != (0, 0):
                fail("%s (bad batches only) has high watermark %s, not 0"
                     % (T_CRC, hw.get((T_CRC, 0))))
            if hw.get((T_GOOD, 0)) != (0, st.good_stored):
                fail("%s: high watermark %s, %d good batches acknowledged"
                     % (T_GOOD, hw.get((T_GOOD, 0)), st.good_stored))
            if hw.get((T_HEALTHY, 0)) != (0, healthy.ok):
                fail("%s: high watermark %s, %d produces acknowledged"
                     % (T_HEALTHY, hw.get((T_HEALTHY, 0)), healthy.ok))
            why = kcat_roundtrip(srv.bootstrap)
            if why:
                fail("kcat round trip after the storm: " + why)
            if rss1 - rss0 > RSS_SLACK_MIB * 1024:
                fail("RSS grew from %d KiB to %d KiB" % (rss0, rss1))

        print("0012: %d frames over %d connections (%d open at once here, %d descriptors in "
              "the gateway at most) in %.1f s" % (st.frames, st.conns, st.open_max, mon.fds_max,
                                                 storm_s))
        for kind in sorted(st.by_kind):
            outcomes = sorted(st.by_kind[kind].items())
            print("  %-22s %s" % (kind, ", ".join("%s %d" % kv for kv in outcomes)))
        if st.pipe_requests:
            print("  good requests pipelined ahead of a bad frame: %d, answered before the "
                  "close: %d"
                  % (st.pipe_requests, st.pipe_answered))
        if st.partial_close:
            pc = sorted(st.partial_close)
            print("  partial frames closed %.2f-%.2f s after their length (median %.2f); "
                  "dedicated: %s" % (pc[0], pc[-1], pc[len(pc) // 2],
                                     ", ".join("%s %.2f s" % kv for kv in sorted(partial.items()))))
        if alive:
            print("  gateway RSS %d KiB warmed up, %d KiB after (peak %d KiB); %d descriptors after"
                  % (rss0, rss1, mon.rss_max, fds1))
        print("  healthy producer: %d acknowledged, %d failed, slowest %.2f s; good batches %d"
              % (healthy.ok, healthy.failed, healthy.max_latency, st.good_stored))


if __name__ == "__main__":
    sys.exit(main())
