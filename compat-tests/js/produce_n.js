// produce_n.js BOOTSTRAP TOPIC FROM COUNT PARTITIONS: kafkajs acks=all
// producer of values FROM..FROM+COUNT-1, value i to partition i % PARTITIONS.
const { Kafka, logLevel } = require('kafkajs');

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const [bootstrap, topic, from, count, parts] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'nh-produce', brokers: [bootstrap], logLevel: logLevel.ERROR });
(async () => {
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = Number(from); i < Number(from) + Number(count); i++)
    messages.push({ value: String(i), partition: i % Number(parts) });
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
