"""group_coord.py: the group coordinator of a cluster of gateways, hand-encoded
(FindCoordinator v1, OffsetCommit v2, OffsetFetch v1; lib/kafka_wire.py).

    group_coord.py coords PORTS GROUP...        every node agrees on each
        group's coordinator, a live node (retried for 20 s while they
        disagree); prints "GROUP NODE" lines
    group_coord.py commit PORTS GROUP TOPIC NPARTS BASE
        the other nodes answer NOT_COORDINATOR (16) to OffsetCommit and
        OffsetFetch; the coordinator stores offset BASE + p for partition p
    group_coord.py verify PORTS GROUP TOPIC NPARTS BASE
        the coordinator returns offset BASE + p for every partition p, the
        other nodes NOT_COORDINATOR

PORTS: the live nodes' ports, comma-separated, ordered by node id; ids are
taken from the answers.  Exit status 1 with a reason on stderr on failure.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_wire as kw  # noqa: E402

NOT_COORDINATOR = 16


def conn(port):
    return kw.Conn("127.0.0.1:%d" % port, timeout=15)


def find_coordinator(port, group):
    c = conn(port)
    try:
        r = kw.Reader(c.call(10, 1, kw.string(group) + kw.i8(0), timeout=15))
    finally:
        c.close()
    r.i32()
    err = r.i16()
    r.string()
    node, host, cport = r.i32(), r.string(), r.i32()
    if err:
        raise ValueError("FindCoordinator(%s) via %d: error %d" % (group, port, err))
    return node, host, cport


def offset_commit(port, group, topic, offsets):
    parts = [kw.i32(p) + kw.i64(o) + kw.string("m%d" % o) for p, o in offsets]
    body = (kw.string(group) + kw.i32(-1) + kw.string("") + kw.i64(-1) +
            kw.array([kw.string(topic) + kw.array(parts)]))
    c = conn(port)
    try:
        r = kw.Reader(c.call(8, 2, body, timeout=15))
    finally:
        c.close()
    topics = r.array(lambda: (r.string(), r.array(lambda: (r.i32(), r.i16()))))
    return {p: e for _, ps in topics for p, e in ps}


def offset_fetch(port, group, topic, nparts):
    body = kw.string(group) + kw.array([kw.string(topic) +
                                        kw.array([kw.i32(p) for p in range(nparts)])])
    c = conn(port)
    try:
        r = kw.Reader(c.call(9, 1, body, timeout=15))
    finally:
        c.close()
    topics = r.array(lambda: (r.string(), r.array(
        lambda: (r.i32(), r.i64(), r.string(), r.i16()))))
    return {p: (o, e) for _, ps in topics for p, o, _m, e in ps}


def die(msg):
    sys.stderr.write("group_coord: %s\n" % msg)
    sys.exit(1)


def coordinator(ports, group):
    """(node id, port) every node names for @group, or die."""
    answers = {port: find_coordinator(port, group) for port in ports}
    nodes = set(a[0] for a in answers.values())
    if len(nodes) != 1:
        return None
    node, host, cport = next(iter(answers.values()))
    if host != "127.0.0.1" or cport not in ports:
        die("coordinator of %s is node %d at %s:%d, no live node" % (group, node, host, cport))
    return node, cport


def cmd_coords(ports, groups):
    deadline = time.monotonic() + 20
    out = {}
    for g in groups:
        while True:
            c = coordinator(ports, g)
            if c:
                out[g] = c[0]
                break
            if time.monotonic() > deadline:
                die("the nodes disagree on the coordinator of %s: %s" % (
                    g, {p: find_coordinator(p, g)[0] for p in ports}))
            time.sleep(0.2)
    for g in groups:
        print("%s %d" % (g, out[g]))


def cmd_commit(ports, group, topic, nparts, base):
    c = coordinator(ports, group) or die("no agreed coordinator for %s" % group)
    offsets = [(p, base + p) for p in range(nparts)]
    for port in ports:
        if port == c[1]:
            continue
        errs = offset_commit(port, group, topic, offsets)
        if set(errs.values()) != {NOT_COORDINATOR} or len(errs) != nparts:
            die("OffsetCommit of %s to node at %d (not its coordinator): %s" % (group, port, errs))
        got = offset_fetch(port, group, topic, nparts)
        if set(e for _, e in got.values()) != {NOT_COORDINATOR}:
            die("OffsetFetch of %s from node at %d (not its coordinator): %s" % (group, port, got))
    errs = offset_commit(c[1], group, topic, offsets)
    if set(errs.values()) != {0} or len(errs) != nparts:
        die("OffsetCommit of %s to its coordinator (node %d): %s" % (group, c[0], errs))


def cmd_verify(ports, group, topic, nparts, base):
    c = coordinator(ports, group) or die("no agreed coordinator for %s" % group)
    got = offset_fetch(c[1], group, topic, nparts)
    want = {p: (base + p, 0) for p in range(nparts)}
    if got != want:
        die("offsets of %s from its coordinator (node %d): %s, expected %s" % (
            group, c[0], got, want))
    for port in ports:
        if port != c[1]:
            got = offset_fetch(port, group, topic, nparts)
            if set(e for _, e in got.values()) != {NOT_COORDINATOR}:
                die("OffsetFetch of %s from node at %d: %s" % (group, port, got))


def main():
    cmd, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
    try:
        if cmd == "coords":
            cmd_coords(ports, sys.argv[3:])
        elif cmd in ("commit", "verify"):
            group, topic, nparts, base = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
            (cmd_commit if cmd == "commit" else cmd_verify)(ports, group, topic, nparts, base)
        else:
            die("unknown command %s" % cmd)
    except (OSError, ValueError, TimeoutError, ConnectionError) as e:
        die("%s: %s" % (cmd, e))


if __name__ == "__main__":
    main()
