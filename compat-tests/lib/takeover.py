"""takeover.py: idempotent producers across leader deaths, and the checks
of what the partitions hold afterwards (compat test 0094).

    takeover.py produce BOOTSTRAP TOPIC NPARTS ACKS_FILE STOP_FILE
        confluent-kafka-python, enable.idempotence (acks=all), values
        "m<i>" to partition i % NPARTS, until STOP_FILE exists; then flushes.
        Writes "PARTITION OFFSET VALUE" per delivery report without error;
        prints the counts; exits 1 when a delivery failed.
    takeover.py verify PORTS TOPIC LEADERS_FILE ACKS_FILE
        PORTS is "ID=PORT,..." of the live nodes, LEADERS_FILE "P LEADER" per
        partition.  Reads every partition from its leader (Fetch v4 from
        offset 0): offsets contiguous from 0 to the high watermark, no value
        "m<i>" stored twice, every acknowledged value at its acknowledged
        partition and offset.  Prints one line per failure, exits 1 on any.
    takeover.py probe PORTS TOPIC LEADERS_FILE
        For every partition: a Produce v3 (acks=-1) at its leader is stored
        (no error, an offset at or above the high watermark read just
        before); the other nodes answer NOT_LEADER_OR_FOLLOWER.  Prints one
        line per failure, exits 1 on any.
    takeover.py epochs PORTS TOPIC LEADERS_FILE
        For every partition at its leader: its leader epoch (ListOffsets
        v4), then OffsetForLeaderEpoch v2 for every epoch from 0 to it: the
        current one answers the high watermark (or above: producers go on),
        an earlier epoch E the base
        offset of the first stored batch whose leader epoch is above E (the
        high watermark when there is none).  Prints "P EPOCH" per partition
        and one line per failure, exits 1 on any.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_wire as kw  # noqa: E402


def produce(bootstrap, topic, nparts, acks_file, stop_file):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "compression.type": "none", "linger.ms": 5, "message.timeout.ms": 120000,
                  "topic.metadata.refresh.interval.ms": 1000, "retry.backoff.ms": 100})
    nparts = int(nparts)
    acked, failed = [0], []
    with open(acks_file, "w") as out:
        def report(err, msg):
            if err is not None:
                failed.append("%s: %s" % (msg.value().decode(), err))
                return
            out.write("%d %d %s\n" % (msg.partition(), msg.offset(), msg.value().decode()))
            acked[0] += 1

        i = 0
        while not os.path.exists(stop_file):
            for _ in range(50):
                while True:
                    try:
                        p.produce(topic, value=b"m%d" % i, partition=i % nparts,
                                  on_delivery=report)
                        break
                    except BufferError:
                        p.poll(0.05)
                i += 1
            p.poll(0)
            time.sleep(0.05)  # at most 1000 messages a second
        left = p.flush(120)
    print("produced %d, acknowledged %d, failed %d, outstanding %d"
          % (i, acked[0], len(failed), left))
    for f in failed[:10]:
        print("delivery failed: " + f)
    sys.exit(1 if failed or left else 0)


def read_leaders(ports, leaders_file):
    nodes = dict((int(k), int(v)) for k, v in (x.split("=") for x in ports.split(",")))
    with open(leaders_file) as f:
        lead = [tuple(map(int, line.split())) for line in f if line.strip()]
    return nodes, lead


def fetch_batches(conn, topic, partition):
    """[(base offset, last offset, leader epoch, records)] from offset 0, and
    the high watermark."""
    out, offset, hw = [], 0, 0
    while True:
        body = kw.i32(-1) + kw.i32(0) + kw.i32(0) + kw.i32(1 << 20) + kw.i8(0)
        body += kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i64(offset)
                                                       + kw.i32(1 << 20)])])
        r = kw.Reader(conn.call(1, 4, body))
        r.i32()  # throttle
        r.i32()  # topics
        r.string()
        r.i32()  # partitions
        r.i32()  # index
        err, hw = r.i16(), r.i64()
        r.i64()  # last stable offset
        r.array(lambda: (r.i64(), r.i64()))
        data = r.bytes_() or b""
        if err:
            raise ValueError("fetch error %d" % err)
        got = 0
        b = kw.Reader(data)
        while len(b.d) - b.p >= 12:
            base, blen = b.i64(), b.i32()
            if blen > len(b.d) - b.p:
                break
            raw = b.take(blen)
            epoch = int.from_bytes(raw[0:4], "big", signed=True)
            last = base + int.from_bytes(raw[4 + 1 + 4 + 2:4 + 1 + 4 + 2 + 4], "big", signed=True)
            if base >= offset:
                out.append((base, last, epoch, kw.parse_records(
                    (base).to_bytes(8, "big", signed=True) + blen.to_bytes(4, "big") + raw)))
                got += 1
        if got == 0 or out[-1][1] + 1 >= hw:
            return out, hw
        offset = out[-1][1] + 1


def verify(ports, topic, leaders_file, acks_file):
    nodes, lead = read_leaders(ports, leaders_file)
    bad, where, total = [], {}, 0
    for p, leader in lead:
        conn = kw.Conn("127.0.0.1:%d" % nodes[leader])
        batches, hw = fetch_batches(conn, topic, p)
        conn.close()
        nxt = 0
        for base, last, _epoch, recs in batches:
            if base != nxt:
                bad.append("partition %d: batch at %d, expected %d (offsets not contiguous)"
                           % (p, base, nxt))
            nxt = last + 1
            for off, value, *_ in recs:
                total += 1
                if value is None or not value.startswith(b"m"):
                    continue
                v = value.decode()
                if v in where:
                    bad.append("%s stored twice: %s and %d/%d" % (v, where[v], p, off))
                where[v] = (p, off)
        if nxt != hw:
            bad.append("partition %d: batches end at %d, high watermark %d" % (p, nxt, hw))
    acked = lost = moved = 0
    with open(acks_file) as f:
        for line in f:
            p, off, v = line.split()
            acked += 1
            got = where.get(v)
            if got is None:
                lost += 1
                if lost <= 10:
                    bad.append("%s acknowledged at %s/%s is not stored" % (v, p, off))
            elif got != (int(p), int(off)):
                moved += 1
                if moved <= 10:
                    bad.append("%s acknowledged at %s/%s is stored at %d/%d"
                               % (v, p, off, got[0], got[1]))
    print("%d acknowledged, %d records stored (%d produced values), %d lost, %d misplaced"
          % (acked, total, len(where), lost, moved))
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


def list_offsets_v4(conn, topic, partition):
    body = kw.i32(-1) + kw.i8(0) + kw.array([kw.string(topic) + kw.array(
        [kw.i32(partition) + kw.i32(-1) + kw.i64(-1)])])
    r = kw.Reader(conn.call(2, 4, body))
    r.i32()
    (_, [(_, err, _ts, off, epoch)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i32(), r.i16(), r.i64(), r.i64(), r.i32()))))
    return err, off, epoch


def probe(ports, topic, leaders_file):
    nodes, lead = read_leaders(ports, leaders_file)
    conns = dict((i, kw.Conn("127.0.0.1:%d" % p)) for i, p in nodes.items())
    bad = []
    for p, leader in lead:
        if leader not in conns:
            bad.append("partition %d: leader %d is not live" % (p, leader))
            continue
        err, hw, _ = list_offsets_v4(conns[leader], topic, p)
        perr, base = kw.produce_v3(conns[leader], topic, p, kw.record_batch([b"probe"]))
        if err or perr or base < hw:
            bad.append("partition %d: at leader %d: ListOffsets error %d (%d), Produce error %d "
                       "offset %d" % (p, leader, err, hw, perr, base))
        for i, c in conns.items():
            if i != leader:
                perr = kw.produce_v3(c, topic, p, kw.record_batch([b"x"]))[0]
                if perr != 6:
                    bad.append("partition %d: node %d (not the leader): Produce error %d"
                               % (p, i, perr))
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


def offset_for_epoch_v2(conn, topic, partition, epoch):
    body = kw.array([kw.string(topic) + kw.array([kw.i32(partition) + kw.i32(-1)
                                                  + kw.i32(epoch)])])
    r = kw.Reader(conn.call(23, 2, body))
    r.i32()  # throttle
    (_, [(err, _p, ep, end)]), = r.array(
        lambda: (r.string(), r.array(lambda: (r.i16(), r.i32(), r.i32(), r.i64()))))
    return err, ep, end


def epochs(ports, topic, leaders_file):
    nodes, lead = read_leaders(ports, leaders_file)
    bad = []
    for p, leader in lead:
        conn = kw.Conn("127.0.0.1:%d" % nodes[leader])
        err, hw, cur = list_offsets_v4(conn, topic, p)
        if err:
            bad.append("partition %d: ListOffsets v4 error %d" % (p, err))
            continue
        batches, hw2 = fetch_batches(conn, topic, p)
        print(p, cur)
        for e in range(cur + 1):
            want = hw2
            for base, _last, be, _recs in batches:
                if be > e:
                    want = base
                    break
            err, ep, end = offset_for_epoch_v2(conn, topic, p, e)
            # The current epoch's end is the high watermark, which producers
            # may have moved on since the fetch.
            if err or ep > e or (end != want if e < cur else (ep != cur or end < want)):
                bad.append("partition %d: OffsetForLeaderEpoch(%d) at leader %d (epoch %d, high "
                           "watermark %d): error %d, epoch %d, end %d; want end %d"
                           % (p, e, leader, cur, hw2, err, ep, end, want))
        conn.close()
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(*args)
    elif cmd == "verify":
        verify(*args)
    elif cmd == "probe":
        probe(*args)
    elif cmd == "epochs":
        epochs(*args)
    else:
        sys.exit("unknown command " + cmd)
