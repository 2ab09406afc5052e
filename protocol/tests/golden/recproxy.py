#!/usr/bin/env python3
"""Recording Kafka proxy (Python 3 standard library only).

Listens on 127.0.0.1, forwards every connection to an upstream broker (the
librdkafka mock cluster started by capture.sh), splits both directions into
Kafka frames (4-byte big-endian length prefix) and records every frame.

Each response is matched to its request by correlation id to learn its API
key and version.  Because the upstream broker advertises its own host:port in
Metadata and FindCoordinator responses, the advertised port is rewritten in
every response, byte for byte: the host string "127.0.0.1" encoded as a
classic string (int16 length 9) or a compact string (uvarint 10), followed by
the upstream port as an int32 big-endian, gets the proxy port instead.  The
frame length does not change.  The mock also answers Metadata with
ControllerId 0, which is no broker: the proxy puts the broker's id there (see
fix_controller_id); and it answers an ApiVersions request of a version it
does not know with a body that is not in v0 format, which the proxy
re-encodes as a broker sends it (see fix_unsupported_api_versions).
Responses are recorded as the client received them, after any rewrite.

One proxy process can serve several listeners, each one labelled with the
client that will use it and with modes:

  LABEL            plain recording
  LABEL+admin      also emulates the topic admin APIs that the mock broker
                   lacks: CreateTopics (19) v0-4 and DeleteTopics (20) v0-3
                   are added to ApiVersions responses, and those requests are
                   answered by the proxy (success for every topic) instead of
                   being forwarded.  Those responses are marked "synthesized".
  LABEL+low        clamps the version ranges advertised in ApiVersions
                   responses to the floors in LOW_CLAMP, so that clients
                   negotiate lower versions than they would by default.

Output (in --out): frames/NNNNNN.bin (frame without its length prefix) and
log.jsonl, one JSON object per frame:
  seq, label, modes, conn, dir ("req"|"resp"), api_key, api_version, corr,
  flags (list: "port-rewritten", "controller-fixed", "v0-reencoded", "augmented", "clamped", "synthesized",
  "unmatched"), file.

usage: recproxy.py --upstream HOST:PORT --out DIR --ports-file FILE SPEC...
The ports file gets one line "SPEC PORT" per listener once all are bound.
"""

import argparse
import asyncio
import json
import os
import signal
import struct
import sys

API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
PRODUCE = 0
METADATA = 3

# Version ranges the proxy answers itself in "+admin" mode (non-flexible only).
EMULATED = {CREATE_TOPICS: (0, 4), DELETE_TOPICS: (0, 3)}

# Max versions advertised in "+low" mode: the lowest versions with which the
# librdkafka clients and kafkajs still use RecordBatch v2 (Produce 3, Fetch 4),
# consumer groups and a controller (Metadata 1).  (kafka-python infers a 0.10
# broker from such ranges and falls back to message format v1.)
LOW_CLAMP = {
    0: 3,    # Produce
    1: 4,    # Fetch
    2: 1,    # ListOffsets
    3: 1,    # Metadata
    8: 2,    # OffsetCommit
    9: 1,    # OffsetFetch
    10: 0,   # FindCoordinator
    11: 2,   # JoinGroup
    12: 0,   # Heartbeat
    13: 0,   # LeaveGroup
    14: 0,   # SyncGroup
    19: 0,   # CreateTopics (emulated)
    20: 0,   # DeleteTopics (emulated)
    22: 0,   # InitProducerId
}

# First flexible version (request header v2) per API key, for the APIs whose
# request body the proxy needs to read.
FIRST_FLEXIBLE = {PRODUCE: 9, API_VERSIONS: 3, CREATE_TOPICS: 5, DELETE_TOPICS: 4}

MAX_FRAME = 64 * 1024 * 1024


def uvarint(buf, pos):
    shift = 0
    val = 0
    while True:
        b = buf[pos]
        pos += 1
        val |= (b & 0x7F) << shift
        if not b & 0x80:
            return val, pos
        shift += 7


def enc_uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def skip_tagged(buf, pos):
    n, pos = uvarint(buf, pos)
    for _ in range(n):
        _, pos = uvarint(buf, pos)
        size, pos = uvarint(buf, pos)
        pos += size
    return pos


class Reader:
    def __init__(self, buf, pos=0):
        self.buf = buf
        self.pos = pos

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s


def parse_request_header(frame):
    """Returns (api_key, api_version, corr, body_offset)."""
    key, ver, corr = struct.unpack_from(">hhi", frame, 0)
    pos = 8
    (clen,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + max(clen, 0)
    flex = FIRST_FLEXIBLE.get(key)
    if flex is not None and ver >= flex:
        pos = skip_tagged(frame, pos)
    return key, ver, corr, pos


def produce_expects_response(frame, ver, body):
    """A Produce request with acks=0 gets no response."""
    try:
        pos = body
        if ver >= 3:
            if ver >= 9:
                n, pos = uvarint(frame, pos)
                pos += max(n - 1, 0)
            else:
                (n,) = struct.unpack_from(">h", frame, pos)
                pos += 2 + max(n, 0)
        (acks,) = struct.unpack_from(">h", frame, pos)
        return acks != 0
    except (struct.error, IndexError):
        return True


def rewrite_ports(frame, upstream_port, proxy_port):
    old = struct.pack(">i", upstream_port)
    new = struct.pack(">i", proxy_port)
    out = frame
    for prefix in (b"\x00\x09127.0.0.1", b"\x0a127.0.0.1"):
        out = out.replace(prefix + old, prefix + new)
    return out


def fix_controller_id(frame, ver):
    """Makes a Metadata (v1+) response name a listed broker as controller.

    The librdkafka 2.0.2 mock answers ControllerId 0, which is no broker, and
    admin clients (and kafkajs' idempotent producer) then wait forever for the
    controller.  Returns the frame unchanged when the id is a listed broker.
    """
    if ver < 1:
        return frame
    flexible = ver >= 9
    r = Reader(frame, 4)
    if flexible:
        r.pos = skip_tagged(frame, r.pos)
    if ver >= 3:
        r.take(">i")  # throttle_time_ms

    def string():
        if flexible:
            n, r.pos = uvarint(frame, r.pos)
            r.pos += max(n - 1, 0)
        else:
            r.string()

    if flexible:
        n, r.pos = uvarint(frame, r.pos)
        n -= 1
    else:
        n = r.take(">i")
    ids = []
    for _ in range(max(n, 0)):
        ids.append(r.take(">i"))
        string()  # host
        r.take(">i")  # port
        string()  # rack
        if flexible:
            r.pos = skip_tagged(frame, r.pos)
    if ver >= 2:
        string()  # cluster_id
    (controller,) = struct.unpack_from(">i", frame, r.pos)
    if not ids or controller in ids:
        return frame
    return frame[:r.pos] + struct.pack(">i", ids[0]) + frame[r.pos + 4:]


def fix_unsupported_api_versions(frame):
    """Re-encodes an ApiVersions error-35 answer in v0 format.

    A broker answers an ApiVersions request of a version it does not know with
    UNSUPPORTED_VERSION (35) in v0 format: error_code, int32 count, entries
    (api_key, min, max), nothing else.  The librdkafka 2.0.2 mock, asked with
    a flexible version, writes a one-byte count (1), the entry and
    throttle_time_ms instead.  Returns the frame unchanged when it is not an
    error-35 answer or is already in v0 format.
    """
    if len(frame) < 7 or struct.unpack_from(">h", frame, 4)[0] != 35:
        return frame
    if len(frame) >= 10:
        (n,) = struct.unpack_from(">i", frame, 6)
        if 0 <= n and len(frame) == 10 + 6 * n:
            return frame
    count = frame[6]
    entries = frame[7:7 + 6 * count]
    if len(entries) != 6 * count:
        return frame
    return frame[:6] + struct.pack(">i", count) + entries


def edit_api_versions(frame, ver, add=None, clamp=None):
    """Adds entries to / clamps an ApiVersions response (header v0).

    Returns the new frame, or the frame unchanged if it carries an error.
    """
    r = Reader(frame, 4)
    err = r.take(">h")
    if err != 0:
        return frame
    flexible = ver >= 3
    entries = []
    if flexible:
        n, r.pos = uvarint(frame, r.pos)
        n -= 1
    else:
        n = r.take(">i")
    for _ in range(max(n, 0)):
        k = r.take(">h")
        lo = r.take(">h")
        hi = r.take(">h")
        tags = b""
        if flexible:
            start = r.pos
            r.pos = skip_tagged(frame, r.pos)
            tags = frame[start:r.pos]
        entries.append([k, lo, hi, tags])
    rest = frame[r.pos:]
    known = {e[0] for e in entries}
    for k, (lo, hi) in sorted((add or {}).items()):
        if k not in known:
            entries.append([k, lo, hi, b"\x00" if flexible else b""])
    for e in entries:
        if clamp and e[0] in clamp:
            e[2] = max(e[1], min(e[2], clamp[e[0]]))
    out = bytearray(frame[:6])
    if flexible:
        out += enc_uvarint(len(entries) + 1)
    else:
        out += struct.pack(">i", len(entries))
    for k, lo, hi, tags in entries:
        out += struct.pack(">hhh", k, lo, hi) + tags
    out += rest
    return bytes(out)


def synthesize_admin(frame, key, ver, corr, body):
    """Success response to a non-flexible CreateTopics/DeleteTopics request."""
    r = Reader(frame, body)
    names = []
    if key == CREATE_TOPICS:
        for _ in range(r.take(">i")):
            names.append(r.string())
            r.take(">i")  # num_partitions
            r.take(">h")  # replication_factor
            for _ in range(max(r.take(">i"), 0)):  # assignments
                r.take(">i")
                for _ in range(max(r.take(">i"), 0)):
                    r.take(">i")
            for _ in range(max(r.take(">i"), 0)):  # configs
                r.string()
                r.string()
    else:
        for _ in range(r.take(">i")):
            names.append(r.string())
    out = bytearray(struct.pack(">i", corr))  # response header v0
    if (key == CREATE_TOPICS and ver >= 2) or (key == DELETE_TOPICS and ver >= 1):
        out += struct.pack(">i", 0)  # throttle_time_ms
    out += struct.pack(">i", len(names))
    for name in names:
        b = name.encode()
        out += struct.pack(">h", len(b)) + b + struct.pack(">h", 0)
        if key == CREATE_TOPICS and ver >= 1:
            out += struct.pack(">h", -1)  # error_message: null
    return bytes(out)


class Recorder:
    def __init__(self, outdir):
        self.outdir = outdir
        os.makedirs(os.path.join(outdir, "frames"), exist_ok=True)
        self.log = open(os.path.join(outdir, "log.jsonl"), "a", buffering=1)
        self.seq = 0
        self.conn_seq = 0

    def record(self, frame, **meta):
        self.seq += 1
        name = "frames/%06d.bin" % self.seq
        with open(os.path.join(self.outdir, name), "wb") as f:
            f.write(frame)
        meta["seq"] = self.seq
        meta["file"] = name
        self.log.write(json.dumps(meta, sort_keys=True) + "\n")


async def read_frame(reader):
    try:
        hdr = await reader.readexactly(4)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    (n,) = struct.unpack(">i", hdr)
    if n < 0 or n > MAX_FRAME:
        raise ValueError("bad frame length %d" % n)
    try:
        return await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class Listener:
    def __init__(self, spec, args, rec):
        parts = spec.split("+")
        self.label = parts[0]
        self.modes = parts[1:]
        self.spec = spec
        self.admin = "admin" in self.modes
        self.low = "low" in self.modes
        self.args = args
        self.rec = rec
        self.port = None

    async def handle(self, creader, cwriter):
        rec = self.rec
        rec.conn_seq += 1
        conn = rec.conn_seq
        try:
            ureader, uwriter = await asyncio.open_connection(
                self.args.upstream_host, self.args.upstream_port)
        except OSError as e:
            print("recproxy: upstream connect failed: %s" % e, file=sys.stderr)
            cwriter.close()
            return
        # Ordered queue of responses owed to the client:
        # [corr, key, ver, frame-or-None, flags]
        queue = []
        base = dict(label=self.label, modes=self.modes, conn=conn)

        def flush():
            while queue and queue[0][3] is not None:
                corr, key, ver, frame, flags = queue.pop(0)
                rec.record(frame, dir="resp", api_key=key, api_version=ver,
                           corr=corr, flags=flags, **base)
                cwriter.write(struct.pack(">i", len(frame)) + frame)

        async def client_to_upstream():
            while True:
                frame = await read_frame(creader)
                if frame is None:
                    break
                key, ver, corr, body = parse_request_header(frame)
                rec.record(frame, dir="req", api_key=key, api_version=ver,
                           corr=corr, flags=[], **base)
                if self.admin and key in EMULATED and key in (CREATE_TOPICS, DELETE_TOPICS):
                    resp = synthesize_admin(frame, key, ver, corr, body)
                    queue.append([corr, key, ver, resp, ["synthesized"]])
                    flush()
                    await cwriter.drain()
                    continue
                if key != PRODUCE or produce_expects_response(frame, ver, body):
                    queue.append([corr, key, ver, None, []])
                uwriter.write(struct.pack(">i", len(frame)) + frame)
                await uwriter.drain()
            uwriter.close()

        async def upstream_to_client():
            while True:
                frame = await read_frame(ureader)
                if frame is None:
                    break
                (corr,) = struct.unpack_from(">i", frame, 0)
                entry = next((e for e in queue if e[0] == corr and e[3] is None), None)
                flags = []
                new = rewrite_ports(frame, self.args.upstream_port, self.port)
                if new != frame:
                    flags.append("port-rewritten")
                    frame = new
                if entry is None:
                    rec.record(frame, dir="resp", api_key=-1, api_version=-1,
                               corr=corr, flags=flags + ["unmatched"], **base)
                    cwriter.write(struct.pack(">i", len(frame)) + frame)
                    await cwriter.drain()
                    continue
                if entry[1] == METADATA:
                    try:
                        new = fix_controller_id(frame, entry[2])
                    except (struct.error, IndexError):
                        new = frame
                    if new != frame:
                        flags.append("controller-fixed")
                        frame = new
                if entry[1] == API_VERSIONS:
                    new = fix_unsupported_api_versions(frame)
                    if new != frame:
                        flags.append("v0-reencoded")
                        frame = new
                if entry[1] == API_VERSIONS and (self.admin or self.low):
                    try:
                        new = edit_api_versions(
                            frame, entry[2],
                            add=EMULATED if self.admin else None,
                            clamp=LOW_CLAMP if self.low else None)
                    except (struct.error, IndexError):
                        new = frame
                    if new != frame:
                        flags.append("augmented" if self.admin else "clamped")
                        if self.admin and self.low:
                            flags.append("clamped")
                        frame = new
                entry[3] = frame
                entry[4] = flags
                flush()
                await cwriter.drain()
            cwriter.close()

        tasks = [asyncio.ensure_future(client_to_upstream()),
                 asyncio.ensure_future(upstream_to_client())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.exception() and not isinstance(t.exception(), ConnectionError):
                print("recproxy: conn %d: %r" % (conn, t.exception()), file=sys.stderr)
        # Let the other direction finish what is in flight, briefly.
        if pending:
            await asyncio.wait(pending, timeout=2)
        for t in pending:
            t.cancel()
        for w in (cwriter, uwriter):
            try:
                w.close()
            except Exception:
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--out", required=True, help="recording directory")
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("specs", nargs="+", help="LABEL[+admin][+low]")
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    args.upstream_host, args.upstream_port = host, int(port)

    rec = Recorder(args.out)
    servers = []
    lines = []
    for spec in args.specs:
        lst = Listener(spec, args, rec)
        srv = await asyncio.start_server(lst.handle, "127.0.0.1", 0)
        lst.port = srv.sockets[0].getsockname()[1]
        servers.append(srv)
        lines.append("%s %d\n" % (spec, lst.port))
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.rename(tmp, args.ports_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers:
        srv.close()
    rec.log.close()


if __name__ == "__main__":
    asyncio.run(main())
