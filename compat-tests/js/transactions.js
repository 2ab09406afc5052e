// transactions.js BOOTSTRAP: kafkajs against a gateway without transactions
// (used by 0032-transactions_refused.py).  An idempotent producer gets a
// producer id and produces; a transactional producer's transaction() is
// refused within a few seconds with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
// Prints the times; exits 1 with a message on the first mismatch.
const assert = require('assert');
const { Kafka, logLevel } = require('kafkajs');

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
// kafkajs reports a coordinator it could not find as
// KafkaJSGroupCoordinatorNotFound; the broker's error is in its debug log.
const brokerErrors = [];
const logCreator = () => ({ log }) => {
  const e = log.error;
  if (e && typeof e === 'object' && e.type) brokerErrors.push(e.type);
};
const kafka = new Kafka({
  clientId: 'nh-compat-txn', brokers: [process.argv[2]], logLevel: logLevel.DEBUG, logCreator,
});

(async () => {
  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await idem.connect();
  for (let i = 0; i < 3; i++) {
    const sent = await idem.send({ topic: 'kjs-idem', acks: -1, messages: [{ value: `v${i}` }] });
    assert.strictEqual(sent[0].errorCode, 0);
    assert.strictEqual(sent[0].baseOffset, String(i));
  }
  await idem.disconnect();
  console.log('kafkajs idempotent producer: 3 records at offsets 0-2');

  const txn = kafka.producer({
    transactionalId: 'nh-txn', idempotent: true, maxInFlightRequests: 1,
  });
  const t0 = Date.now();
  let err = null;
  try {
    await txn.connect();
    await txn.transaction();
  } catch (e) {
    err = e;
  }
  const ms = Date.now() - t0;
  await txn.disconnect().catch(() => {});
  assert.ok(err, 'transaction() succeeded');
  console.log(`kafkajs transaction(): rejected after ${ms} ms: ${err.name}: ${err.message} ` +
    `(retriable ${err.retriable}; broker errors: ${[...new Set(brokerErrors)].join(', ')})`);
  assert.ok(brokerErrors.includes('TRANSACTIONAL_ID_AUTHORIZATION_FAILED'),
    'the gateway did not answer TRANSACTIONAL_ID_AUTHORIZATION_FAILED');
  assert.strictEqual(err.retriable, false);
  assert.ok(ms < 5000, `rejected only after ${ms} ms`);
  console.log('kafkajs: ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
