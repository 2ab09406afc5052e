#!/usr/bin/python3
"""0011-long_poll: the Fetch long poll, timed at the wire.

Plain sockets and hand-encoded requests (Metadata v4, Produce v3 carrying a
RecordBatch v2 with its CRC32C, Fetch v4 and v11), so that nothing between
the test and the gateway adds latency of its own:

(a) a fetch parked at the high watermark (max_wait_ms 5000, min_bytes 1)
    receives a record produced during the wait: its response arrives at most
    WAKE_BOUND_MS after the acks=-1 produce response (the commit that answers
    the produce also wakes the fetch).  Best of 3 attempts (a shared machine
    may stall one).
(b) a fetch with nothing to read returns after max_wait_ms +- EMPTY_SLACK_MS,
    for max_wait_ms 1000 and 2000.  Median of 3.

Every measured number is printed.
"""

import os
import selectors
import socket
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kafka_wire as kw  # noqa: E402
from nh_server import NuthatchServer  # noqa: E402

WAKE_BOUND_MS = 20.0  # (a): fetch response at most this long after the produce response
EMPTY_SLACK_MS = 100.0  # (b): empty fetch returns within max_wait_ms +- this
TOPIC = "long-poll"

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


# CRC32C and the primitive encoders: lib/kafka_wire.py.
crc32c = kw.crc32c
i8, i16, i32, i64, string, array = kw.i8, kw.i16, kw.i32, kw.i64, kw.string, kw.array
uvarint, varint, compact_string = kw.uvarint, kw.varint, kw.compact_string


def record_batch(key, value, headers, ts_ms):
    """One RecordBatch v2 with a single record, offsets from 0."""
    body = i8(0) + varint(0) + varint(0)  # attributes, timestamp delta, offset delta
    body += varint(len(key)) + key + varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        body += varint(len(hk)) + hk + varint(len(hv)) + hv
    record = varint(len(body)) + body
    after_crc = (i16(0) + i32(0) + i64(ts_ms) + i64(ts_ms)  # attributes, last offset delta
                 + i64(-1) + i16(-1) + i32(-1)  # producer id, epoch, base sequence
                 + i32(1) + record)
    tail = i32(0) + i8(2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return i64(0) + i32(len(tail)) + tail


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated response")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def uvarint(self):
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def array(self, fn):
        n = self.i32()
        return [] if n < 0 else [fn() for _ in range(n)]


def parse_records(data):
    """(offset, key, value, headers) of every record of the batches in @data."""
    out = []
    r = Reader(data or b"")
    while len(r.d) - r.p >= 12:
        base = r.i64()
        blen = r.i32()
        if blen > len(r.d) - r.p:
            break  # a partial batch at the end
        b = Reader(r.take(blen))
        b.i32()  # leader epoch
        if b.i8() != 2:
            raise ValueError("magic is not 2")
        crc = struct.unpack(">I", b.take(4))[0]
        if crc32c(b.d[b.p:]) != crc:
            raise ValueError("batch CRC mismatch")
        b.take(2 + 4 + 8 + 8 + 8 + 2 + 4)
        for _ in range(b.i32()):
            b.varint()  # length
            b.i8()
            b.varint()
            delta = b.varint()
            kl = b.varint()
            key = None if kl < 0 else b.take(kl)
            vl = b.varint()
            value = None if vl < 0 else b.take(vl)
            hdrs = []
            for _ in range(b.varint()):
                hk = b.take(b.varint())
                hl = b.varint()
                hdrs.append((hk, None if hl < 0 else b.take(hl)))
            out.append((base + delta, key, value, hdrs))
    return out


# ------------------------------------------------------------------ requests


class Conn:
    """One connection; requests are written whole, responses read as frames."""

    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.corr = 0

    def send(self, api_key, version, body):
        self.corr += 1
        header = i16(api_key) + i16(version) + i32(self.corr) + string("nh-long-poll")
        if api_key == 1 and version >= 12 or api_key == 0 and version >= 9:
            header += b"\x00"  # flexible versions: tagged fields (not used here)
        msg = header + body
        self.sock.sendall(i32(len(msg)) + msg)
        return self.corr

    def frame(self):
        """A complete response frame if one is buffered, else None."""
        if len(self.buf) < 4:
            return None
        n = struct.unpack(">i", self.buf[:4])[0]
        if len(self.buf) < 4 + n:
            return None
        data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return data

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed by the gateway")
        self.buf += chunk

    def recv(self, corr, timeout=30.0):
        """The body of response @corr (responses come in request order)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.frame()
            if data is not None:
                got = struct.unpack(">i", data[:4])[0]
                if got != corr:
                    raise ValueError("correlation id %d, expected %d" % (got, corr))
                return data[4:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response in %.0f s" % timeout)
            self.sock.settimeout(left)
            self.fill()

    def close(self):
        self.sock.close()


def metadata_v4(conn, topic):
    """Metadata v4 with auto-creation: the topic's error and partition count."""
    body = array([string(topic)]) + i8(1)
    r = Reader(conn.recv(conn.send(3, 4, body)))
    r.i32()  # throttle
    r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller

    def partition():
        err, idx, leader = r.i16(), r.i32(), r.i32()
        r.array(r.i32)
        r.array(r.i32)
        return err, idx, leader

    def topic_():
        err, name, _internal = r.i16(), r.string(), r.i8()
        return err, name, r.array(partition)

    topics = r.array(topic_)
    return {name: (err, len(parts)) for err, name, parts in topics}


def produce_v3_send(conn, topic, partition, batch):
    body = string(None) + i16(-1) + i32(10000)  # no transactional id, acks=-1, timeout
    body += array([string(topic) + array([i32(partition) + i32(len(batch)) + batch])])
    return conn.send(0, 3, body)


def produce_v3_parse(data):
    r = Reader(data)
    (name, [(idx, err, base, _)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return err, base


def fetch_send(conn, version, topic, partition, offset, max_wait_ms, min_bytes=1):
    body = i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(1 << 20) + i8(0)
    if version >= 7:
        body += i32(0) + i32(-1)  # sessionless: session id 0, epoch -1
    part = i32(partition)
    if version >= 9:
        part += i32(-1)  # current leader epoch: unknown
    part += i64(offset)
    if version >= 5:
        part += i64(-1)  # log start offset (followers only)
    part += i32(1 << 20)
    body += array([string(topic) + array([part])])
    if version >= 7:
        body += array([])  # forgotten topics
    if version >= 11:
        body += string("")  # rack id
    return conn.send(1, version, body)


def fetch_parse(data, version):
    """(error, high watermark, records) of the single partition."""
    r = Reader(data)
    r.i32()  # throttle
    if version >= 7:
        top_err = r.i16()
        r.i32()  # session id
        if top_err:
            return top_err, -1, []

    def partition():
        idx, err, hw = r.i32(), r.i16(), r.i64()
        r.i64()  # last stable offset
        if version >= 5:
            r.i64()  # log start offset
        r.array(lambda: (r.i64(), r.i64()))  # aborted transactions
        if version >= 11:
            r.i32()  # preferred read replica
        return err, hw, r.bytes_()

    (_, [(err, hw, records)]), = r.array(lambda: (r.string(), r.array(partition)))
    return err, hw, parse_records(records)


# ------------------------------------------------------------------ the tests


def produce_one(conn, value):
    batch = record_batch(b"key", value, [(b"h", b"v")], int(time.time() * 1000))
    err, base = produce_v3_parse(conn.recv(produce_v3_send(conn, TOPIC, 0, batch)))
    check(err == 0, "produce: error %d" % err)
    return base


def wake_attempt(fetcher, producer, hw, n):
    """(a) once: the milliseconds from the produce response to the fetch
    response, or None when the attempt did not work."""
    value = b"woken-%d" % n
    corr_f = fetch_send(fetcher, 4, TOPIC, 0, hw, 5000)
    t_fetch_sent = time.monotonic_ns()
    # The fetch must be parked: no answer for a while.
    fetcher.sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(fetcher.sock, selectors.EVENT_READ, fetcher)
    if sel.select(0.3):
        check(False, "(a) attempt %d: the fetch at the high watermark answered at once" % n)
        fetcher.sock.setblocking(True)
        fetcher.recv(corr_f)
        return None
    batch = record_batch(b"key-%d" % n, value, [(b"attempt", b"%d" % n)],
                         int(time.time() * 1000))
    corr_p = produce_v3_send(producer, TOPIC, 0, batch)
    t_produce_sent = time.monotonic_ns()
    producer.sock.setblocking(False)
    sel.register(producer.sock, selectors.EVENT_READ, producer)
    done = {}
    deadline = time.monotonic() + 10
    while len(done) < 2 and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            conn = key.data
            try:
                conn.fill()
            except BlockingIOError:
                continue
            data = conn.frame()
            if data is not None:
                done[conn] = (time.monotonic_ns(), data)
                sel.unregister(conn.sock)
    sel.close()
    fetcher.sock.setblocking(True)
    producer.sock.setblocking(True)
    if len(done) < 2:
        check(False, "(a) attempt %d: no %s response in 10 s"
              % (n, "fetch" if fetcher not in done else "produce"))
        return None
    t_p, pdata = done[producer]
    t_f, fdata = done[fetcher]
    check(struct.unpack(">i", pdata[:4])[0] == corr_p, "(a) produce correlation id")
    check(struct.unpack(">i", fdata[:4])[0] == corr_f, "(a) fetch correlation id")
    perr, base = produce_v3_parse(pdata[4:])
    ferr, fhw, recs = fetch_parse(fdata[4:], 4)
    ok = perr == 0 and ferr == 0 and base == hw and fhw == hw + 1
    ok = ok and [(o, v) for o, _, v, _ in recs] == [(hw, value)]
    check(ok, "(a) attempt %d: produce error %d at %d, fetch error %d, hw %d, records %s"
          % (n, perr, base, ferr, fhw, [(o, v) for o, _, v, _ in recs]))
    gap = (t_f - t_p) / 1e6
    print("(a) attempt %d: produce answered %.2f ms after sending it; fetch answered %.2f ms "
          "after the produce response (%.0f ms after the fetch was sent)"
          % (n, (t_p - t_produce_sent) / 1e6, gap, (t_f - t_fetch_sent) / 1e6))
    return gap if ok else None


def empty_fetch(conn, version, hw, max_wait_ms):
    t0 = time.monotonic_ns()
    data = conn.recv(fetch_send(conn, version, TOPIC, 0, hw, max_wait_ms))
    elapsed = (time.monotonic_ns() - t0) / 1e6
    err, fhw, recs = fetch_parse(data, version)
    check(err == 0 and fhw == hw and not recs,
          "(b) empty fetch: error %d, hw %d (expected %d), %d records" % (err, fhw, hw, len(recs)))
    return elapsed


def run(bs):
    fetcher, producer = Conn(bs), Conn(bs)
    deadline = time.monotonic() + 20
    while True:
        md = metadata_v4(producer, TOPIC)
        if md.get(TOPIC, (-1, 0)) == (0, 1):
            break
        if time.monotonic() > deadline:
            check(False, "topic not created: %s" % md)
            return
        time.sleep(0.1)
    hw = produce_one(producer, b"first") + 1  # warm up the partition
    check(hw == 1, "first produce at offset %d" % (hw - 1))

    # (a) the long poll is woken by the commit.
    gaps = []
    for n in range(1, 4):
        g = wake_attempt(fetcher, producer, hw, n)
        hw += 1
        if g is not None:
            gaps.append(g)
    if gaps:
        best = min(gaps)
        print("(a) best: fetch response %.2f ms after the produce response (bound %.0f ms)"
              % (best, WAKE_BOUND_MS))
        check(best <= WAKE_BOUND_MS,
              "(a) fetch answered %.2f ms after the produce response (> %.0f ms) in every attempt"
              % (best, WAKE_BOUND_MS))
    else:
        check(False, "(a) no attempt worked")

    # (b) an empty fetch waits max_wait_ms (Fetch v11 this time).
    for wait in (1000, 2000):
        times = [empty_fetch(fetcher, 11, hw, wait) for _ in range(3)]
        med = statistics.median(times)
        print("(b) max_wait_ms %d: answered after %s ms (median %.1f, bound %d +- %.0f)"
              % (wait, ", ".join("%.1f" % t for t in times), med, wait, EMPTY_SLACK_MS))
        check(abs(med - wait) <= EMPTY_SLACK_MS,
              "(b) max_wait_ms %d: median %.1f ms" % (wait, med))
    fetcher.close()
    producer.close()


def main():
    with NuthatchServer() as srv:
        run(srv.bootstrap)
    check(srv.exit_status == 0, "nuthatch exited %s after SIGTERM" % srv.exit_status)
    if failures:
        print("0011-long_poll: %d failure(s)" % len(failures))
        sys.exit(1)
    print("0011-long_poll: ok")


if __name__ == "__main__":
    main()
