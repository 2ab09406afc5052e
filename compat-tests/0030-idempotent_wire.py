#!/usr/bin/python3
"""0030-idempotent_wire: the idempotent producer rules, at the wire.

Hand-encoded requests over plain sockets (lib/kafka_wire.py: Produce v3
with RecordBatch v2 and CRC32C, InitProducerId v0-v4, Fetch v4):

- InitProducerId: a transactional id answers 53 in every version; ids are
  new and distinct; v3+ with the current id and epoch bumps the epoch, an
  older epoch gets INVALID_PRODUCER_EPOCH (47); after a restart the id is
  not known any more and a new, larger id comes back (ids are taken from
  the counter in the metadata store, which the test reads).
- Produce: a transactional batch gets INVALID_TXN_STATE (48), a
  transactional id TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53); a producer
  with no state starts at any sequence; a retry of each of the last five
  batches gets its original base offset and is not stored again, the
  sixth-oldest gets OUT_OF_ORDER_SEQUENCE_NUMBER (45), so do a gap and a
  newer epoch not starting at 0; an older epoch gets 47.
- The same checks after the epoch bump, after a SIGTERM restart and after a
  SIGKILL and restart (the state comes back from the manifests).
- At the end every record reads back once, at the offset its produce got.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kafka_wire as kw  # noqa: E402
from nh_server import NuthatchServer, free_ports  # noqa: E402

TOPIC = "idem-wire"
OUT_OF_ORDER, INVALID_EPOCH, INVALID_TXN_STATE, TXN_AUTH = 45, 47, 48, 53

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


class Producer:
    """A hand-driven idempotent producer: what it sent and where it landed."""

    def __init__(self, pid, epoch, seq):
        self.pid, self.epoch, self.seq = pid, epoch, seq
        self.sent = []  # (epoch, first sequence, record count, base offset)

    def batch(self, epoch, seq, n):
        values = [b"%d/%d/%d" % (self.pid, epoch, seq + i) for i in range(n)]
        return kw.record_batch(values, producer_id=self.pid, epoch=epoch, base_sequence=seq)

    def send(self, conn, n, what):
        err, base = kw.produce_v3(conn, TOPIC, 0, self.batch(self.epoch, self.seq, n))
        check(err == 0, "%s: produce of %d records at sequence %d: error %d"
              % (what, n, self.seq, err))
        if err == 0:
            self.sent.append((self.epoch, self.seq, n, base))
            self.seq += n
        return err, base

    def replay(self, conn, entry):
        epoch, seq, n, _ = entry
        return kw.produce_v3(conn, TOPIC, 0, self.batch(epoch, seq, n))


def high_watermark(conn):
    err, hw, _ = kw.fetch_v4(conn, TOPIC, 0, 0, max_bytes=1)
    check(err == 0, "fetch error %d" % err)
    return hw


def check_state(conn, p, label):
    """The rules against @p's last batches, storing nothing."""
    hw = high_watermark(conn)
    last = [e for e in p.sent if e[0] == p.epoch]
    check(len(last) >= 6, "%s: at least six batches of the epoch" % label)
    for entry in last[-5:]:
        err, base = p.replay(conn, entry)
        check(err == 0 and base == entry[3],
              "%s: retry of sequence %d: error %d, offset %d, expected 0 and %d"
              % (label, entry[1], err, base, entry[3]))
    err, _ = p.replay(conn, last[-6])
    check(err == OUT_OF_ORDER, "%s: retry of the sixth-oldest batch: error %d, expected %d"
          % (label, err, OUT_OF_ORDER))
    err, _ = kw.produce_v3(conn, TOPIC, 0, p.batch(p.epoch, p.seq + 1, 1))
    check(err == OUT_OF_ORDER, "%s: a gap: error %d, expected %d" % (label, err, OUT_OF_ORDER))
    err, _ = kw.produce_v3(conn, TOPIC, 0, p.batch(p.epoch + 1, 3, 1))
    check(err == OUT_OF_ORDER, "%s: a newer epoch not at sequence 0: error %d" % (label, err))
    if p.epoch > 0:
        err, _ = kw.produce_v3(conn, TOPIC, 0, p.batch(p.epoch - 1, p.seq, 1))
        check(err == INVALID_EPOCH, "%s: an older epoch: error %d, expected %d"
              % (label, err, INVALID_EPOCH))
    check(high_watermark(conn) == hw, "%s: the refused batches and retries were stored" % label)
    print("%s: retries of the last five answered with their offsets, the rest refused; hw %d"
          % (label, hw))


def start(srv):
    for _ in range(3):
        try:
            return srv.start()
        except RuntimeError as e:  # the port may still be held for a moment
            print(e, file=sys.stderr)
            time.sleep(1)
    raise RuntimeError("nuthatch did not restart")


def main():
    port = free_ports(1)[0]
    srv = NuthatchServer(settings={"listeners": "PLAINTEXT://127.0.0.1:%d" % port})
    start(srv)
    conn = kw.Conn(srv.bootstrap)
    versions = kw.api_versions(conn)
    check(versions.get(22) == (0, 4), "InitProducerId listed as %s" % (versions.get(22),))
    for key in (24, 25, 26, 28):  # AddPartitionsToTxn .. TxnOffsetCommit
        check(key not in versions, "transaction api %d is listed" % key)
    check(kw.metadata_v4(conn, TOPIC).get(TOPIC, (1,))[0] == 0, "topic not created")

    for v in range(5):
        err, pid, _ = kw.init_producer_id(conn, v, transactional_id="txn-%d" % v)
        check(err == TXN_AUTH and pid == -1,
              "InitProducerId v%d with a transactional id: error %d" % (v, err))
    err, pid, epoch = kw.init_producer_id(conn, 4)
    check(err == 0 and pid >= 0 and epoch == 0, "InitProducerId v4: %d %d %d" % (err, pid, epoch))
    err0, pid0, epoch0 = kw.init_producer_id(conn, 0)
    check(err0 == 0 and pid0 not in (-1, pid) and epoch0 == 0,
          "InitProducerId v0: %d %d %d" % (err0, pid0, epoch0))
    print("producer ids %d and %d" % (pid, pid0))

    txn = kw.record_batch([b"t"], producer_id=pid0, epoch=0, base_sequence=0,
                          attributes=kw.ATTR_TRANSACTIONAL)
    err, _ = kw.produce_v3(conn, TOPIC, 0, txn)
    check(err == INVALID_TXN_STATE, "transactional batch: error %d" % err)
    plain = kw.record_batch([b"x"], producer_id=pid0, epoch=0, base_sequence=0)
    err, _ = kw.produce_v3(conn, TOPIC, 0, plain, transactional_id="txn")
    check(err == TXN_AUTH, "produce with a transactional id: error %d" % err)
    check(high_watermark(conn) == 0, "refused produce requests stored something")

    p = Producer(pid, 0, 1000)  # no state yet: any first sequence
    for i in range(7):
        p.send(conn, 1 + i % 3, "epoch 0")
    check_state(conn, p, "epoch 0")

    err, bpid, bepoch = kw.init_producer_id(conn, 3, producer_id=pid, epoch=0)
    check((err, bpid, bepoch) == (0, pid, 1), "epoch bump v3: %d %d %d" % (err, bpid, bepoch))
    err, _, _ = kw.init_producer_id(conn, 4, producer_id=pid, epoch=0)
    check(err == INVALID_EPOCH, "InitProducerId with the old epoch: error %d" % err)
    err, bpid, bepoch = kw.init_producer_id(conn, 4, producer_id=pid, epoch=1)
    check((err, bpid, bepoch) == (0, pid, 2), "epoch bump v4: %d %d %d" % (err, bpid, bepoch))
    p.epoch, p.seq = 2, 0
    for i in range(6):
        p.send(conn, 2, "epoch 2")
    check_state(conn, p, "after the epoch bump")
    conn.close()

    rc = srv.stop()
    check(rc == 0, "SIGTERM stop: exit status %s" % rc)
    start(srv)
    conn = kw.Conn(srv.bootstrap)
    check_state(conn, p, "after a restart")
    p.send(conn, 3, "after a restart")
    p.send(conn, 1, "after a restart")
    conn.close()

    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None
    start(srv)
    conn = kw.Conn(srv.bootstrap)
    check_state(conn, p, "after kill -9")
    p.send(conn, 2, "after kill -9")
    err, npid, nepoch = kw.init_producer_id(conn, 4, producer_id=pid, epoch=2)
    check(err == 0 and npid > max(pid, pid0) and nepoch == 0,
          "InitProducerId of an id from before the restart: %d %d %d" % (err, npid, nepoch))

    records = kw.fetch_all(conn, TOPIC, 0)
    want = []
    for epoch, seq, n, base in p.sent:
        want += [(base + i, b"%d/%d/%d" % (p.pid, epoch, seq + i)) for i in range(n)]
    got = [(o, v) for o, v, _, _, _ in records]
    check(got == want, "read back %d records, expected %d: first difference at %s"
          % (len(got), len(want),
             next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got),
                                                                                 len(want)))))
    check([o for o, _ in got] == list(range(len(got))), "offsets are not 0..n-1")
    print("read back %d records from %d batches, each once, at its offset" % (len(got),
                                                                              len(p.sent)))
    conn.close()
    rc = srv.stop()
    check(rc == 0, "final stop: exit status %s" % rc)
    counter = srv.meta_range(b"/nuthatch/counters/producer-id")
    check(len(counter) == 1 and int(counter[0][1]) > npid,
          "the producer id counter: %s (last id %d)" % (counter, npid))
    print("counter /nuthatch/counters/producer-id = %s" % (counter[0][1].decode()
                                                           if counter else None))
    srv.cleanup()


if __name__ == "__main__":
    main()
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("ok")
