// admin_more.js BOOTSTRAP PHASE: kafkajs 2.2.4 admin beyond the basics
// (used by 0042-kafkajs_admin.sh): createPartitions, deleteTopicRecords,
// describeConfigs, alterConfigs, describeCluster and
// fetchTopicOffsetsByTimestamp.  PHASE "before" sets everything up and
// checks it; "after" (following a restart of the gateway) checks that it
// stayed.  Exits 1 with a message on the first mismatch.
const assert = require('assert');
const { Kafka, logLevel, ConfigResourceTypes, CompressionTypes } = require('kafkajs');

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const kafka = new Kafka({
  clientId: 'nh-compat-admin',
  brokers: [process.argv[2]],
  logLevel: logLevel.NOTHING,
  retry: { retries: 2, initialRetryTime: 100 },
});
const phase = process.argv[3];
const T = 'kjs-admin';
const TS0 = 1700000000000;

async function errorType(promise) {
  try {
    await promise;
    return 'NO_ERROR';
  } catch (e) {
    for (let x = e; x; x = x.originalError || x.cause) {
      if (x.partitions && x.partitions[0] && x.partitions[0].error)
        return x.partitions[0].error.type;
      if (x.type)
        return x.type;
    }
    return e.name;
  }
}

async function configs(admin, names) {
  const r = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: T, configNames: names }],
    includeSynonyms: false,
  });
  const out = {};
  for (const e of r.resources[0].configEntries) out[e.configName] = e;
  return out;
}

function alter(admin, entries, validateOnly = false, type = ConfigResourceTypes.TOPIC, name = T) {
  return admin.alterConfigs({ validateOnly, resources: [{ type, name, configEntries: entries }] });
}

async function offsets(admin) {
  const o = await admin.fetchTopicOffsets(T);
  o.sort((a, b) => a.partition - b.partition);
  return o;
}

async function byTime(admin, ts) {
  const o = await admin.fetchTopicOffsetsByTimestamp(T, ts);
  return o.find((x) => x.partition === 0).offset;
}

async function before(admin) {
  assert.strictEqual(await admin.createTopics({ topics: [{ topic: T, numPartitions: 1 }] }), true);
  const cluster = await admin.describeCluster();
  assert.strictEqual(cluster.brokers.length, 1);
  assert.strictEqual(cluster.controller, cluster.brokers[0].nodeId);
  assert.ok(cluster.clusterId && cluster.clusterId.length > 0, 'cluster id');

  // CreatePartitions: 1 -> 3, not down, not to the same count.
  assert.strictEqual(await errorType(admin.createPartitions({ topicPartitions: [{ topic: T, count: 1 }] })),
    'INVALID_PARTITIONS');
  assert.strictEqual(await errorType(admin.createPartitions({ validateOnly: true, topicPartitions: [{ topic: T, count: 7 }] })),
    'NO_ERROR');
  await admin.createPartitions({ topicPartitions: [{ topic: T, count: 3 }] });
  const md = await admin.fetchTopicMetadata({ topics: [T] });
  assert.strictEqual(md.topics[0].partitions.length, 3);

  // Records with distinct timestamps, one batch per partition and send.
  const producer = kafka.producer();
  await producer.connect();
  for (const [p, codec] of [[0, CompressionTypes.None], [0, CompressionTypes.GZIP], [2, CompressionTypes.GZIP]]) {
    const base = p === 0 && codec === CompressionTypes.GZIP ? 50 : 0;
    const messages = [];
    for (let i = 0; i < 50; i++)
      messages.push({ value: `r${base + i}`, partition: p, timestamp: String(TS0 + 10 * (base + i)) });
    const r = await producer.send({ topic: T, compression: codec, messages });
    assert.strictEqual(r[0].errorCode, 0);
  }
  await producer.disconnect();
  let o = await offsets(admin);
  assert.deepStrictEqual(o.map((x) => [x.low, x.high]), [['0', '100'], ['0', '0'], ['0', '50']]);

  // By timestamp: record granularity inside a batch, gzip too.
  assert.strictEqual(await byTime(admin, TS0 + 10 * 7), '7');
  assert.strictEqual(await byTime(admin, TS0 + 10 * 7 + 3), '8');
  assert.strictEqual(await byTime(admin, TS0 + 10 * 63), '63');
  assert.strictEqual(await byTime(admin, TS0 - 1), '0');

  // DeleteRecords: the low watermark moves, ListOffsets follows.
  await admin.deleteTopicRecords({ topic: T, partitions: [{ partition: 0, offset: '60' }] });
  assert.strictEqual(await errorType(admin.deleteTopicRecords({ topic: T, partitions: [{ partition: 2, offset: '51' }] })),
    'OFFSET_OUT_OF_RANGE');
  await admin.deleteTopicRecords({ topic: T, partitions: [{ partition: 2, offset: '-1' }] });
  o = await offsets(admin);
  assert.deepStrictEqual(o.map((x) => [x.low, x.high]), [['60', '100'], ['0', '0'], ['50', '50']]);
  assert.strictEqual(await byTime(admin, TS0 + 10 * 7), '60'); // below the start: the start
  assert.strictEqual(await byTime(admin, TS0 + 10 * 70), '70');

  // Configs: sources and values; the supported ones change, others not.
  let c = await configs(admin, ['retention.ms', 'cleanup.policy', 'max.message.bytes']);
  assert.strictEqual(c['retention.ms'].isDefault, true);
  assert.strictEqual(c['cleanup.policy'].configValue, 'delete');
  await alter(admin, [{ name: 'retention.ms', value: '7200000' }, { name: 'retention.bytes', value: '1000000' }]);
  for (const bad of [[{ name: 'cleanup.policy', value: 'compact' }], [{ name: 'segment.ms', value: '10' }],
    [{ name: 'retention.bytes', value: '12x' }]])
    assert.strictEqual(await errorType(alter(admin, bad)), 'INVALID_CONFIG', JSON.stringify(bad));
  assert.strictEqual(await errorType(alter(admin, [{ name: 'retention.ms', value: '1' }], true)), 'NO_ERROR');
  assert.strictEqual(await errorType(alter(admin, [{ name: 'log.retention.ms', value: '1' }], false,
    ConfigResourceTypes.BROKER, '1')), 'INVALID_REQUEST');
  c = await configs(admin, ['retention.ms', 'retention.bytes']);
  assert.strictEqual(c['retention.ms'].configValue, '7200000');
  assert.strictEqual(c['retention.ms'].isDefault, false);
  assert.strictEqual(c['retention.ms'].configSource, 1); // DYNAMIC_TOPIC_CONFIG
  assert.strictEqual(c['retention.bytes'].configValue, '1000000');
}

async function after(admin) {
  const md = await admin.fetchTopicMetadata({ topics: [T] });
  assert.strictEqual(md.topics[0].partitions.length, 3);
  const o = await offsets(admin);
  assert.deepStrictEqual(o.map((x) => [x.low, x.high]), [['60', '100'], ['0', '0'], ['50', '50']]);
  assert.strictEqual(await byTime(admin, TS0 + 10 * 7), '60');
  assert.strictEqual(await byTime(admin, TS0 + 10 * 71 + 1), '72');
  const c = await configs(admin, ['retention.ms', 'retention.bytes']);
  assert.strictEqual(c['retention.ms'].configValue, '7200000');
  assert.strictEqual(c['retention.bytes'].configValue, '1000000');
  // the new partition takes records after the restart
  const producer = kafka.producer();
  await producer.connect();
  const r = await producer.send({ topic: T, messages: [{ value: 'p1', partition: 1 }] });
  assert.strictEqual(r[0].baseOffset, '0');
  await producer.disconnect();
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  if (phase === 'before') await before(admin);
  else await after(admin);
  await admin.disconnect();
  console.log(`kafkajs admin ${phase}: ok`);
})().catch((e) => {
  console.error('kafkajs admin:', e);
  process.exit(1);
});
