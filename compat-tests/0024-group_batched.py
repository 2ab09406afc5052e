#!/usr/bin/python3
"""0024-group_batched: the batched forms of the group APIs, at the wire.

No installed client sends these versions (librdkafka 2.0.2 stops at
FindCoordinator v2 and OffsetFetch v7), so the requests are hand-encoded
(lib/kafka_wire.py):

- FindCoordinator v4 (KIP-699): one answer per key, in request order; group
  keys name this node, transaction keys (type 1) answer
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) each; v3 (flexible, one key).
- OffsetFetch v8 (KIP-709): three groups in one request -- two with
  offsets committed (OffsetCommit v2, no group coordination), one unknown;
  topics null (every committed offset of the group) and an explicit topic
  list (an uncommitted partition answers -1); the metadata strings come
  back as committed (a null one as "", as Kafka stores it); the same after
  a restart.
- LeaveGroup v3 (KIP-345): two static members of one group leave in one
  request, an unknown member in the same request gets UNKNOWN_MEMBER_ID
  (25) alone; the group then has no member (DescribeGroups v0).
- ApiVersions lists FindCoordinator up to v4 and OffsetFetch up to v8.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kafka_wire as kw  # noqa: E402
from nh_server import NuthatchServer  # noqa: E402

TOPIC_A, TOPIC_B = "batched-a", "batched-b"
UNKNOWN_MEMBER_ID, TXN_AUTH = 25, 53

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


cstr = kw.compact_string
carray = kw.compact_array
nullable_carray = kw.compact_nullable_array


def find_coordinator_v4(conn, key_type, keys):
    """[(key, node, host, port, error)]."""
    body = kw.i8(key_type) + carray([cstr(k) for k in keys]) + b"\x00"
    r = kw.Reader(conn.call(10, 4, body))
    r.i32()  # throttle

    def coord():
        c = (r.compact_string(), r.i32(), r.compact_string(), r.i32(), r.i16())
        r.compact_string()  # error message
        r.tags()
        return c

    return r.compact_array(coord)


def find_coordinator_v3(conn, key):
    """(error, node, host, port)."""
    r = kw.Reader(conn.call(10, 3, cstr(key) + kw.i8(0) + b"\x00"))
    r.i32()  # throttle
    err = r.i16()
    r.compact_string()  # error message
    return err, r.i32(), r.compact_string(), r.i32()


def offset_commit_v2(conn, group, topic, offsets):
    """Commit {partition: (offset, metadata)} without group coordination."""
    parts = [kw.i32(p) + kw.i64(o) + kw.string(m) for p, (o, m) in sorted(offsets.items())]
    body = (kw.string(group) + kw.i32(-1) + kw.string("") + kw.i64(-1)
            + kw.array([kw.string(topic) + kw.array(parts)]))
    r = kw.Reader(conn.call(8, 2, body))
    errs = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            errs.append(r.i16())
    return errs


def offset_fetch_v8(conn, groups):
    """groups: [(group, None | {topic: [partitions]})] ->
    {group: (error, {(topic, partition): (offset, metadata, error)})}."""
    def group(g, topics):
        ts = None if topics is None else [
            cstr(t) + carray([kw.i32(p) for p in ps]) + b"\x00" for t, ps in topics.items()]
        return cstr(g) + nullable_carray(ts) + b"\x00"

    body = carray([group(g, t) for g, t in groups]) + kw.i8(0) + b"\x00"  # require_stable false
    r = kw.Reader(conn.call(9, 8, body))
    r.i32()  # throttle
    out = {}

    def one_group():
        gid = r.compact_string()
        offs = {}

        def topic():
            name = r.compact_string()

            def part():
                p, off, _epoch, meta, err = r.i32(), r.i64(), r.i32(), r.compact_string(), r.i16()
                r.tags()
                offs[(name, p)] = (off, meta, err)

            r.compact_array(part)
            r.tags()

        r.compact_array(topic)
        err = r.i16()
        r.tags()
        out[gid] = (err, offs)

    r.compact_array(one_group)
    return out


def join_group_v5(conn, group, member_id, instance_id):
    body = (kw.string(group) + kw.i32(30000) + kw.i32(30000) + kw.string(member_id)
            + kw.string(instance_id) + kw.string("consumer")
            + kw.array([kw.string("range") + kw.i32(4) + b"meta"]))
    return conn.send(11, 5, body)


def join_result(conn, corr):
    """(error, generation, member id)."""
    r = kw.Reader(conn.recv(corr, timeout=60))
    r.i32()  # throttle
    err, gen = r.i16(), r.i32()
    r.string()  # protocol
    r.string()  # leader
    member = r.string()
    return err, gen, member


def leave_group_v3(conn, group, members):
    """members: [(member id, instance id)] -> (error, [(member, instance, error)])."""
    body = kw.string(group) + kw.array([kw.string(m) + kw.string(i) for m, i in members])
    r = kw.Reader(conn.call(13, 3, body))
    r.i32()  # throttle
    err = r.i16()
    return err, r.array(lambda: (r.string(), r.string(), r.i16()))


def describe_group_v0(conn, group):
    """(error, state, member count)."""
    r = kw.Reader(conn.call(15, 0, kw.array([kw.string(group)])))
    if r.i32() != 1:
        return -1, None, -1
    err, _gid, state = r.i16(), r.string(), r.string()
    r.string()  # protocol type
    r.string()  # protocol
    members = r.array(lambda: (r.string(), r.string(), r.string(), r.bytes_(), r.bytes_()))
    return err, state, len(members)


def check_offsets(conn, when):
    got = offset_fetch_v8(conn, [
        ("g-one", None),
        ("g-two", {TOPIC_A: [0, 1], TOPIC_B: [0]}),
        ("g-none", None),
    ])
    check(set(got) == {"g-one", "g-two", "g-none"}, "%s: groups answered: %s" % (when, sorted(got)))
    err, offs = got.get("g-one", (-1, {}))
    check(err == 0 and offs == {(TOPIC_A, 0): (5, "m-a0", 0), (TOPIC_A, 1): (7, "", 0),
                                (TOPIC_B, 0): (2, "m-b0", 0)},
          "%s: g-one: error %d, %s" % (when, err, offs))
    err, offs = got.get("g-two", (-1, {}))
    check(err == 0 and offs == {(TOPIC_A, 0): (11, "two", 0), (TOPIC_A, 1): (-1, "", 0),
                                (TOPIC_B, 0): (-1, "", 0)},
          "%s: g-two: error %d, %s" % (when, err, offs))
    err, offs = got.get("g-none", (-1, {"x": 1}))
    check(err == 0 and offs == {}, "%s: g-none: error %d, %s" % (when, err, offs))


def run(srv):
    conn = kw.Conn(srv.bootstrap)
    versions = kw.api_versions(conn)
    check(versions.get(10, (0, 0))[1] == 4, "FindCoordinator listed as %s" % (versions.get(10),))
    check(versions.get(9, (0, 0))[1] == 8, "OffsetFetch listed as %s" % (versions.get(9),))
    host, port = srv.bootstrap.rsplit(":", 1)

    coords = find_coordinator_v4(conn, 0, ["g-one", "g-two", "g-three"])
    check([c[0] for c in coords] == ["g-one", "g-two", "g-three"], "v4 keys: %s" % coords)
    check(all(c[1] >= 0 and c[2] == host and c[3] == int(port) and c[4] == 0 for c in coords),
          "v4 group coordinators: %s" % coords)
    coords = find_coordinator_v4(conn, 1, ["t-one", "t-two"])
    check([(c[0], c[1], c[4]) for c in coords] == [("t-one", -1, TXN_AUTH), ("t-two", -1, TXN_AUTH)],
          "v4 transaction keys: %s" % coords)
    err, node, h, p = find_coordinator_v3(conn, "g-one")
    check(err == 0 and node >= 0 and (h, p) == (host, int(port)), "v3: %s" % ((err, node, h, p),))

    for t in (TOPIC_A, TOPIC_B):
        check(kw.metadata_v4(conn, t).get(t, (1,))[0] == 0, "topic %s not created" % t)
    errs = offset_commit_v2(conn, "g-one", TOPIC_A, {0: (5, "m-a0"), 1: (7, None)})
    errs += offset_commit_v2(conn, "g-one", TOPIC_B, {0: (2, "m-b0")})
    errs += offset_commit_v2(conn, "g-two", TOPIC_A, {0: (11, "two")})
    check(errs == [0, 0, 0, 0], "OffsetCommit errors %s" % errs)
    check_offsets(conn, "live")

    # Two static members join one group (two connections: a join waits for
    # the rebalance), then leave in one request with a stranger.
    c2 = kw.Conn(srv.bootstrap)
    members = []
    for c, inst in ((conn, "inst-1"), (c2, "inst-2")):
        members.append([c, inst, join_group_v5(c, "g-leave", "", inst)])
    for m in members:
        err, gen, mid = join_result(m[0], m[2])
        check(err == 0 and gen >= 1 and mid, "join of %s: error %d generation %d" % (m[1], err, gen))
        m.append(mid)
    err, state, n = describe_group_v0(conn, "g-leave")
    check(err == 0 and n == 2, "before leaving: error %d, %s, %d members" % (err, state, n))
    err, answers = leave_group_v3(conn, "g-leave", [(members[0][3], "inst-1"),
                                                    (members[1][3], "inst-2"),
                                                    ("nobody", None)])
    check(err == 0, "LeaveGroup v3: error %d" % err)
    check([a[2] for a in answers] == [0, 0, UNKNOWN_MEMBER_ID],
          "LeaveGroup v3 member answers: %s" % answers)
    err, state, n = describe_group_v0(conn, "g-leave")
    # A group left without members and offsets is forgotten: Dead (Kafka
    # says Empty until its periodic clean-up).
    check(err == 0 and n == 0 and state in ("Empty", "Dead"),
          "after leaving: error %d, %s, %d members" % (err, state, n))
    c2.close()
    conn.close()


def main():
    # Both joins land in the first rebalance, which waits a second for more.
    srv = NuthatchServer(settings={"group.initial.rebalance.delay.ms": "1000",
                                   "num.partitions": "2"})
    with srv:
        run(srv)
        srv.stop()
        srv.start()
        conn = kw.Conn(srv.bootstrap)
        check_offsets(conn, "after a restart")
        conn.close()
    if failures:
        print("0024-group_batched: %d failure(s)" % len(failures))
        return 1
    print("0024-group_batched: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
