#!/usr/bin/python3
"""0031-idempotent_crash: a real idempotent producer through kill -9.

confluent-kafka-python (librdkafka) with enable.idempotence=true produces
N_MESSAGES numbered records, paced, to a 3-partition topic while the gateway
is killed with SIGKILL KILLS times mid-stream and restarted on the same port
and data (etcd and s3rver keep running with NH_BACKEND=s3).  The producer
reaches the gateway through a relay (the gateway advertises the relay's
port): before each kill the relay withholds the gateway's responses for
HOLD_S, so that batches are committed but never acknowledged, then cuts
every connection as the gateway dies.  The producer retries those batches
with their sequence numbers after the restart: the gateway must recognise
them from the producer state restored from its manifests and answer with
the original offsets (without that, they are stored twice).  Then every
message must have been
delivered, and reading every partition back from offset 0 must give each
record exactly once (no duplicates), at the offset its delivery report
named, in production order per partition, offsets without gaps.  Finally a
SIGTERM stop exits 0.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer, free_ports  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError:
    print("0031: confluent-kafka-python missing: skipped")
    sys.exit(77)

TOPIC = "idem-crash"
PARTITIONS = 3
N_MESSAGES = 12000
KILLS = 3
RATE = 1500  # messages per second
HOLD_S = 0.5  # responses withheld before each kill

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def start(srv):
    for _ in range(5):
        try:
            return srv.start()
        except RuntimeError as e:  # the port may still be held for a moment
            print(str(e)[-500:], file=sys.stderr)
            time.sleep(1)
    raise RuntimeError("nuthatch did not restart")


class Relay:
    """A loopback TCP relay to the gateway that can withhold its responses
    (they are dropped: the connections are cut before it lets go)."""

    def __init__(self, port, upstream):
        self.upstream = upstream
        self.hold = threading.Event()
        self.lock = threading.Lock()
        self.socks = []
        self.withheld = 0  # response bytes dropped
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, up]
            threading.Thread(target=self._pump, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src, dst, responses):
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            if responses and self.hold.is_set():
                self.withheld += len(data)
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main():
    port, relay_port = free_ports(2)
    relay = Relay(relay_port, port)
    srv = NuthatchServer(settings={"listeners": "PLAINTEXT://127.0.0.1:%d" % port,
                                   "advertised.listeners": "PLAINTEXT://127.0.0.1:%d" % relay_port,
                                   "num.partitions": str(PARTITIONS)})
    start(srv)
    bootstrap = "127.0.0.1:%d" % relay_port
    delivered = {}  # value -> (partition, offset)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append("%s: %s" % (msg.value(), err))
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 120000,
                         "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500,
                         "socket.timeout.ms": 5000})
    kill_at = [N_MESSAGES * (k + 1) // (KILLS + 1) for k in range(KILLS)]
    t0 = time.monotonic()
    for i in range(N_MESSAGES):
        value = b"m-%06d" % i
        while True:
            try:
                producer.produce(TOPIC, value=value, key=b"%d" % (i % 97),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if i in kill_at:
            before, withheld = len(delivered), relay.withheld
            relay.hold.set()
            t_hold = time.monotonic()
            while time.monotonic() - t_hold < HOLD_S:  # keep producing meanwhile
                producer.poll(0.01)
            srv.proc.kill()
            srv.proc.wait()
            srv.proc = None
            relay.cut()
            relay.hold.clear()
            time.sleep(0.3)
            start(srv)
            print("kill %d at message %d: %d delivered before it, %d response bytes withheld"
                  % (kill_at.index(i) + 1, i, before, relay.withheld - withheld))
        # pace: librdkafka has requests in flight at every kill
        ahead = i / RATE - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    left = producer.flush(180)
    print("produced %d in %.1f s; %d delivered, %d errors, %d not delivered"
          % (N_MESSAGES, time.monotonic() - t0, len(delivered), len(errors), left))
    check(left == 0 and not errors and len(delivered) == N_MESSAGES,
          "delivery: %d delivered, errors %s" % (len(delivered), errors[:5]))

    consumer = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "idem-crash-check",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    stored = {}  # (partition, offset) -> value
    highs = {}
    for p in range(PARTITIONS):
        highs[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    eof = set(p for p in range(PARTITIONS) if highs[p] == 0)
    deadline = time.monotonic() + 60
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # _PARTITION_EOF
                eof.add(msg.partition())
            else:
                check(False, "consume: %s" % msg.error())
            continue
        key = (msg.partition(), msg.offset())
        check(key not in stored, "offset %s read twice" % (key,))
        stored[key] = msg.value()
    consumer.close()
    check(len(eof) == PARTITIONS, "did not reach the end of every partition")

    total = sum(highs.values())
    print("high watermarks %s: %d records stored for %d messages" % (highs, total, N_MESSAGES))
    check(total == N_MESSAGES, "%d records stored for %d messages" % (total, N_MESSAGES))
    values = list(stored.values())
    check(len(values) == len(set(values)), "%d duplicate records"
          % (len(values) - len(set(values))))
    wrong = [(v, at) for v, at in delivered.items() if stored.get(at) != v]
    check(not wrong, "%d delivered records not at their offsets, e.g. %s" % (len(wrong), wrong[:3]))
    for p in range(PARTITIONS):
        offs = sorted(o for q, o in stored if q == p)
        check(offs == list(range(highs[p])), "partition %d: offsets with gaps" % p)
        seq = [stored[(p, o)] for o in offs]
        check(seq == sorted(seq), "partition %d: records out of production order" % p)
    rc = srv.stop()
    check(rc == 0, "SIGTERM stop: exit status %s" % rc)
    srv.cleanup()


if __name__ == "__main__":
    main()
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("ok")
