#!/usr/bin/python3
"""0032-transactions_refused: transactional producers fail fast.

Transactions are not built: a transactional id is refused with
TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), which clients treat as fatal
rather than retrying until their timeouts.

- confluent-kafka-python (librdkafka): init_transactions(30) raises a
  KafkaException whose error is fatal, code 53, within FAIL_FAST_S.
- kafkajs (js/transactions.js): an idempotent producer gets a producer id
  (InitProducerId v1) and produces; a transactional producer's
  transaction() rejects within 5 s, non-retriable, after the gateway
  answered 53 (seen in kafkajs's debug log).
- librdkafka's idempotent producer (InitProducerId v4) still works next to
  them.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from nh_server import NuthatchServer  # noqa: E402

try:
    from confluent_kafka import KafkaError, KafkaException, Producer
except ImportError:
    print("0032: confluent-kafka-python missing: skipped")
    sys.exit(77)

JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
FAIL_FAST_S = 5.0

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def main():
    if shutil.which("node") is None or not os.path.isdir(os.path.join(JS, "node_modules",
                                                                      "kafkajs")):
        print("0032: node or kafkajs (npm ci in compat-tests/js) missing: skipped")
        sys.exit(77)
    with NuthatchServer() as srv:
        p = Producer({"bootstrap.servers": srv.bootstrap, "transactional.id": "nh-txn"})
        t0 = time.monotonic()
        err = None
        try:
            p.init_transactions(30)
        except KafkaException as e:
            err = e.args[0]
        took = time.monotonic() - t0
        check(err is not None, "init_transactions succeeded")
        if err is not None:
            print("confluent init_transactions(30): %.3f s: code %d (%s), fatal %s: %s"
                  % (took, err.code(), err.name(), err.fatal(), err.str()))
            check(err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                  and err.code() == 53, "init_transactions: code %d" % err.code())
            check(err.fatal(), "init_transactions: the error is not fatal")
        check(took < FAIL_FAST_S, "init_transactions took %.1f s" % took)
        del p

        idem = Producer({"bootstrap.servers": srv.bootstrap, "enable.idempotence": True})
        acks = []
        for i in range(5):
            idem.produce("librdkafka-idem", value=b"v%d" % i,
                         on_delivery=lambda e, m: acks.append((e, m.offset())))
        check(idem.flush(30) == 0, "idempotent producer: not all delivered")
        check(acks == [(None, i) for i in range(5)], "idempotent producer: %s" % acks)
        print("librdkafka idempotent producer: offsets %s" % [o for _, o in acks])

        r = subprocess.run(["node", "transactions.js", srv.bootstrap], cwd=JS, timeout=120,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(r.stdout.decode(errors="replace").rstrip())
        check(r.returncode == 0, "kafkajs: exit status %d" % r.returncode)
        rc = srv.stop()
        check(rc == 0, "SIGTERM stop: exit status %s" % rc)


if __name__ == "__main__":
    main()
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("ok")
