// admin_produce.js BOOTSTRAP: kafkajs admin and producer against one gateway
// (used by 0004-kafkajs.sh).  Exits 1 with a message on the first mismatch.
const assert = require('assert');
const { Kafka, logLevel } = require('kafkajs');

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const kafka = new Kafka({ clientId: 'nh-compat', brokers: [process.argv[2]], logLevel: logLevel.ERROR });

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  assert.strictEqual(await admin.createTopics({ topics: [{ topic: 'kjs', numPartitions: 2 }] }), true);
  const md = await admin.fetchTopicMetadata({ topics: ['kjs'] });
  assert.strictEqual(md.topics[0].partitions.length, 2);
  assert.deepStrictEqual(md.topics[0].partitions[1].isr, [1]);

  const producer = kafka.producer();
  await producer.connect();
  const sent = await producer.send({
    topic: 'kjs',
    messages: [{ key: 'a', value: 'b', partition: 1 }, { value: 'c', partition: 1 }],
  });
  assert.strictEqual(sent[0].errorCode, 0);
  assert.strictEqual(sent[0].baseOffset, '0');

  const offsets = await admin.fetchTopicOffsets('kjs');
  const p1 = offsets.find((o) => o.partition === 1);
  assert.strictEqual(p1.high, '2');
  assert.strictEqual(p1.low, '0');

  const cfg = await admin.describeConfigs({
    resources: [{ type: 2, name: 'kjs', configNames: ['retention.ms'] }],
  });
  assert.strictEqual(cfg.resources[0].configEntries[0].configName, 'retention.ms');

  await admin.deleteTopics({ topics: ['kjs'] });
  assert.deepStrictEqual(await admin.listTopics(), []);
  await producer.disconnect();
  await admin.disconnect();
  console.log('kafkajs: ok');
})().catch((e) => {
  console.error('kafkajs:', e);
  process.exit(1);
});
