"""kafka_wire.py: hand-encoded Kafka requests over plain sockets, for tests
that must see exactly what goes on the wire (0024, 0030, 0044).

CRC32C, the primitive encoders (flexible ones too), a response Reader, RecordBatch v2 with
producer id, epoch and sequence, a Conn (whole requests out, frames in) and
the few requests the tests send: Metadata v4, Produce v3, Fetch v4,
InitProducerId v0-v4, ApiVersions v0.
"""

import socket
import struct
import time

# ------------------------------------------------------------------ CRC32C


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# ------------------------------------------------------------------ encoding


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


def uvarint(v):
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def varint(v):  # zigzag
    return uvarint((v << 1) ^ (v >> 63))


def compact_nullable_string(s):
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


compact_string = compact_nullable_string


def compact_array(items):
    return uvarint(len(items) + 1) + b"".join(items)


def compact_nullable_array(items):
    return uvarint(0) if items is None else compact_array(items)


ATTR_TRANSACTIONAL = 0x10


def record_batch(values, ts_ms=None, producer_id=-1, epoch=-1, base_sequence=-1,
                 attributes=0):
    """One uncompressed RecordBatch v2 holding @values (bytes) as records
    without keys, offsets from 0."""
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    records = b""
    for i, value in enumerate(values):
        body = i8(0) + varint(0) + varint(i)  # attributes, timestamp delta, offset delta
        body += varint(-1) + varint(len(value)) + value + varint(0)  # no key, no headers
        records += varint(len(body)) + body
    after_crc = (i16(attributes) + i32(len(values) - 1) + i64(ts_ms) + i64(ts_ms)
                 + i64(producer_id) + i16(epoch) + i32(base_sequence)
                 + i32(len(values)) + records)
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

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_array(self, fn):
        """A compact array; None when null."""
        n = self.uvarint()
        return None if n == 0 else [fn() for _ in range(n - 1)]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def parse_records(data):
    """[(offset, value, producer id, epoch, base sequence)] of every record
    of the (uncompressed) batches in @data."""
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
        b.take(2 + 4 + 8 + 8)
        pid, epoch, seq = b.i64(), b.i16(), b.i32()
        for _ in range(b.i32()):
            b.varint()  # length
            b.i8()
            b.varint()
            delta = b.varint()
            kl = b.varint()
            if kl >= 0:
                b.take(kl)
            vl = b.varint()
            value = None if vl < 0 else b.take(vl)
            for _ in range(b.varint()):
                b.take(b.varint())
                hl = b.varint()
                if hl >= 0:
                    b.take(hl)
            out.append((base + delta, value, pid, epoch, seq))
    return out


# ------------------------------------------------------------------ connection

# api key: first flexible version (protocol/gen/kp_msgs.h, KP_*_FLEX_VERSION)
FLEXIBLE_FROM = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5,
                 16: 3, 18: 3, 19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 32: 4, 33: 2, 36: 2, 37: 2,
                 42: 2, 44: 1, 60: 0}


class Conn:
    """One connection; requests are written whole, responses read as frames."""

    def __init__(self, bootstrap, client_id="nh-wire", timeout=30):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.corr = 0
        self.client_id = client_id
        self.flexible = {}  # correlation id -> response header has tagged fields

    def send(self, api_key, version, body):
        self.corr += 1
        header = i16(api_key) + i16(version) + i32(self.corr) + string(self.client_id)
        flexible = version >= FLEXIBLE_FROM.get(api_key, 1 << 15)
        if flexible:
            header += b"\x00"  # request header v2: tagged fields
        # ApiVersions answers with header v0 whatever its version.
        self.flexible[self.corr] = flexible and api_key != 18
        msg = header + body
        self.sock.sendall(i32(len(msg)) + msg)
        return self.corr

    def frame(self):
        if len(self.buf) < 4:
            return None
        n = struct.unpack(">i", self.buf[:4])[0]
        if len(self.buf) < 4 + n:
            return None
        data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return data

    def recv(self, corr, timeout=30.0):
        """The body of response @corr (responses come in request order)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.frame()
            if data is not None:
                got = struct.unpack(">i", data[:4])[0]
                if got != corr:
                    raise ValueError("correlation id %d, expected %d" % (got, corr))
                body = data[4:]
                if self.flexible.pop(corr, False):
                    r = Reader(body)
                    r.tags()
                    body = body[r.p:]
                return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no response in %.0f s" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed by the gateway")
            self.buf += chunk

    def call(self, api_key, version, body, timeout=30.0):
        return self.recv(self.send(api_key, version, body), timeout)

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ requests


def api_versions(conn):
    """{api key: (min, max)} from ApiVersions v0."""
    r = Reader(conn.call(18, 0, b""))
    err = r.i16()
    if err:
        raise ValueError("ApiVersions error %d" % err)
    return {k: (lo, hi) for k, lo, hi in r.array(lambda: (r.i16(), r.i16(), r.i16()))}


def metadata_v4(conn, topic):
    """Metadata v4 with auto-creation: {name: (error, partitions)}."""
    r = Reader(conn.call(3, 4, array([string(topic)]) + i8(1)))
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

    return {name: (err, len(parts)) for err, name, parts in r.array(topic_)}


def produce_v3(conn, topic, partition, batch, transactional_id=None, timeout=30.0):
    """acks=-1: (error, base offset) of the single partition."""
    body = string(transactional_id) + i16(-1) + i32(10000)
    body += array([string(topic) + array([i32(partition) + i32(len(batch)) + batch])])
    r = Reader(conn.call(0, 3, body, timeout))
    (_, [(_, err, base, _)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return err, base


def fetch_v4(conn, topic, partition, offset, max_bytes=1 << 20):
    """(error, high watermark, records) of the single partition, no wait."""
    body = i32(-1) + i32(0) + i32(0) + i32(max_bytes) + i8(0)
    body += array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
    r = Reader(conn.call(1, 4, body))
    r.i32()  # throttle

    def part():
        idx, err, hw = r.i32(), r.i16(), r.i64()
        r.i64()  # last stable offset
        r.array(lambda: (r.i64(), r.i64()))  # aborted transactions
        return err, hw, r.bytes_()

    (_, [(err, hw, records)]), = r.array(lambda: (r.string(), r.array(part)))
    return err, hw, parse_records(records)


def fetch_all(conn, topic, partition):
    """Every record of the partition, from offset 0 to the high watermark."""
    out, offset = [], 0
    while True:
        err, hw, recs = fetch_v4(conn, topic, partition, offset)
        if err:
            raise ValueError("fetch error %d" % err)
        recs = [rec for rec in recs if rec[0] >= offset]
        out += recs
        if not recs or out[-1][0] + 1 >= hw:
            return out
        offset = out[-1][0] + 1


def init_producer_id(conn, version, transactional_id=None, producer_id=-1, epoch=-1):
    """(error, producer id, epoch)."""
    if version >= 2:
        body = compact_nullable_string(transactional_id) + i32(60000)
    else:
        body = string(transactional_id) + i32(60000)
    if version >= 3:
        body += i64(producer_id) + i16(epoch)
    if version >= 2:
        body += b"\x00"
    r = Reader(conn.call(22, version, body))
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()
