"""part_leaders.py: partition leadership as the gateways answer it, hand-encoded.

    part_leaders.py leaders BOOTSTRAP TOPIC
        prints "P LEADER" per partition from Metadata v4 (auto-creating the
        topic); exits 1 on a topic error
    part_leaders.py error BOOTSTRAP TOPIC
        prints the topic's error code in Metadata v4 without auto-creation
        (0: known, 3: UNKNOWN_TOPIC_OR_PARTITION)
    part_leaders.py check PORTS TOPIC LEADERS_FILE
        PORTS is "ID=PORT,..." of the live nodes, LEADERS_FILE the output of
        leaders.  For every partition: two Produce v3 (acks=-1) to its leader
        get consecutive offsets from its high watermark; Produce v3, Fetch v4,
        ListOffsets v1 and OffsetForLeaderEpoch v0 sent to every other node
        get NOT_LEADER_OR_FOLLOWER (6); Fetch v4 and ListOffsets v1 from the
        leader see the records; Fetch v11 from the leader with current leader
        epoch -1 or the partition's (ListOffsets v4) succeeds, with one below
        it (when above 0) gets FENCED_LEADER_EPOCH (74), with 5 above it
        UNKNOWN_LEADER_EPOCH (75).  Prints one line per failure, exits 1 on
        any.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_wire as kw  # noqa: E402

NOT_LEADER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


def leaders(bootstrap, topic, create=True):
    c = kw.Conn(bootstrap)
    r = kw.Reader(c.call(3, 4, kw.array([kw.string(topic)]) + kw.i8(1 if create else 0),
                         timeout=20))
    r.i32()  # throttle
    r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))
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

    (err, _, parts), = r.array(topic_)
    c.close()
    if not create:
        print(err)
        return
    if err:
        sys.exit("topic error %d" % err)
    for perr, idx, leader in sorted(parts, key=lambda p: p[1]):
        if perr:
            sys.exit("partition %d error %d" % (idx, perr))
        print(idx, leader)


def list_offsets_v1(conn, topic, partition):
    body = kw.i32(-1) + kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i64(-1)])])
    r = kw.Reader(conn.call(2, 1, body))
    (_, [(_, err, _ts, off)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return err, off


def leader_epoch(conn, topic, partition):
    """The partition's leader epoch as ListOffsets v4 answers it (latest offset)."""
    body = kw.i32(-1) + kw.i8(0) + kw.array([kw.string(topic) + kw.array(
        [kw.i32(partition) + kw.i32(-1) + kw.i64(-1)])])
    r = kw.Reader(conn.call(2, 4, body))
    r.i32()  # throttle
    (_, [(_, err, _ts, _off, epoch)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64(), r.i32()))))
    return err, epoch


def offset_for_epoch_v0(conn, topic, partition):
    body = kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i32(0)])])
    r = kw.Reader(conn.call(23, 0, body))
    (_, [(err, _, _)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i16(), r.i32(), r.i64()))))
    return err


def fetch_v11_error(conn, topic, partition, epoch):
    """The partition's error of a Fetch v11 from offset 0 with current_leader_epoch @epoch."""
    body = kw.i32(-1) + kw.i32(0) + kw.i32(0) + kw.i32(1 << 20) + kw.i8(0) + kw.i32(0) + kw.i32(-1)
    body += kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i32(epoch) + kw.i64(0)
                                                   + kw.i64(-1) + kw.i32(1 << 20)])])
    body += kw.array([]) + kw.string("")
    r = kw.Reader(conn.call(1, 11, body))
    r.i32()  # throttle
    r.i16()  # error
    r.i32()  # session id
    r.i32()  # topics
    r.string()
    r.i32()  # partitions
    r.i32()  # index
    return r.i16()


def check(ports, topic, leaders_file):
    nodes = dict((int(k), int(v)) for k, v in (x.split("=") for x in ports.split(",")))
    conns = dict((i, kw.Conn("127.0.0.1:%d" % p)) for i, p in nodes.items())
    bad = []
    with open(leaders_file) as f:
        lead = [tuple(map(int, line.split())) for line in f if line.strip()]
    for p, leader in lead:
        if leader not in conns:
            bad.append("partition %d: leader %d is not live" % (p, leader))
            continue
        lc = conns[leader]
        err, hw = list_offsets_v1(lc, topic, p)
        if err:
            bad.append("partition %d: ListOffsets at leader %d: error %d" % (p, leader, err))
            continue
        for k in range(2):
            err, base = kw.produce_v3(lc, topic, p, kw.record_batch([b"v%d-%d" % (p, k)]))
            if err or base != hw + k:
                bad.append("partition %d: produce %d at leader %d: error %d offset %d (want %d)"
                           % (p, k, leader, err, base, hw + k))
        err, hw2, recs = kw.fetch_v4(lc, topic, p, hw)
        if err or hw2 != hw + 2 or [rec[0] for rec in recs] != [hw, hw + 1]:
            bad.append("partition %d: fetch at leader %d: error %d hw %d offsets %s"
                       % (p, leader, err, hw2, [rec[0] for rec in recs]))
        err, ep = leader_epoch(lc, topic, p)
        if err:
            bad.append("partition %d: ListOffsets v4 at leader %d: error %d" % (p, leader, err))
        tries = (-1, ep, ep + 5) + ((ep - 1,) if ep > 0 else ())
        want = (0, 0, UNKNOWN_LEADER_EPOCH) + ((FENCED_LEADER_EPOCH,) if ep > 0 else ())
        got = tuple(fetch_v11_error(lc, topic, p, e) for e in tries)
        if got != want:
            bad.append("partition %d: fetch v11 at leader %d with leader epochs %s: %s"
                       % (p, leader, tries, got))
        for i, c in conns.items():
            if i == leader:
                continue
            got = (kw.produce_v3(c, topic, p, kw.record_batch([b"x"]))[0],
                   kw.fetch_v4(c, topic, p, 0)[0], list_offsets_v1(c, topic, p)[0],
                   offset_for_epoch_v0(c, topic, p))
            if got != (NOT_LEADER,) * 4:
                bad.append("partition %d: node %d (not the leader) answered produce, fetch, "
                           "list offsets, offset for epoch with %s" % (p, i, got))
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


def produce_body(topic, partition, batch):
    body = kw.string(None) + kw.i16(-1) + kw.i32(10000)
    return body + kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i32(len(batch))
                                                        + batch])])


def produce_answer(data):
    r = kw.Reader(data)
    (_, [(_, err, base, _)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return err, base


def pause(bootstrap, pid, topic, partition, pause_s, others):
    import signal
    import time
    c = kw.Conn(bootstrap)
    err, first = kw.produce_v3(c, topic, partition, kw.record_batch([b"before"]))
    if err:
        sys.exit("produce before the pause: error %d" % err)
    os.kill(pid, signal.SIGSTOP)
    paused = time.monotonic()
    during = []  # offsets acknowledged by the partition's new leader meanwhile
    try:
        corr = c.send(0, 3, produce_body(topic, partition, kw.record_batch([b"paused"])))
        # Once the lease expired the partition moves: its new leader takes
        # it over and appends.
        while time.monotonic() < paused + pause_s - 0.5 and len(during) < 2:
            for o in others.split(","):
                try:
                    oc = kw.Conn(o)
                    err, base = kw.produce_v3(oc, topic, partition,
                                              kw.record_batch([b"during"]), timeout=2)
                    oc.close()
                except (ConnectionError, OSError, TimeoutError):
                    err = -1
                if err == 0:
                    during.append(base)
                    break
            time.sleep(0.2)
        time.sleep(max(0.0, paused + pause_s - time.monotonic()))
    finally:
        os.kill(pid, signal.SIGCONT)
    if len(during) < 2:
        sys.exit("no other node appended to partition %d during the %.1f s pause (%s)"
                 % (partition, pause_s, during))
    if during != [first + 1, first + 2]:
        sys.exit("the new leader appended at %s, want %s" % (during, [first + 1, first + 2]))
    first = during[-1]
    resumed = time.monotonic()
    err, base = produce_answer(c.recv(corr, 30))
    if err != NOT_LEADER:
        sys.exit("produce sent during the pause: error %d offset %d (want error %d)"
                 % (err, base, NOT_LEADER))
    deadline = resumed + 30
    while True:
        try:
            err, base = kw.produce_v3(c, topic, partition, kw.record_batch([b"after"]))
        except (ConnectionError, OSError):
            c = kw.Conn(bootstrap)
            err, base = -1, -1
        if err == 0:
            break
        if time.monotonic() > deadline:
            sys.exit("no produce acknowledged within 30 s of the resume (last error %d)" % err)
        time.sleep(0.2)
    print("acknowledged again %.1f s after the resume" % (time.monotonic() - resumed))
    if base != first + 1:
        sys.exit("after the resume: offset %d, want %d" % (base, first + 1))
    recs = kw.fetch_all(c, topic, partition)
    vals = [rec[1] for rec in recs if rec[0] >= during[0]]
    if vals != [b"during", b"during", b"after"]:
        sys.exit("from the new leader's first record: %s, want during, during, after (the "
                 "record sent to the paused leader is never stored)" % vals)


if __name__ == "__main__":
    if sys.argv[1] == "pause":
        pause(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6]),
              sys.argv[7])
    elif sys.argv[1] == "error":
        leaders(sys.argv[2], sys.argv[3], create=False)
    elif sys.argv[1] == "leaders":
        leaders(sys.argv[2], sys.argv[3])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
