// group_member.js BOOTSTRAP GROUP TOPIC NAME: one kafkajs 2.2.4 consumer-group
// member (used by 0022-kafkajs_group.sh).  Prints one JSON line per event:
//   {"ev":"join","t":ms,"parts":[...]}                after each rebalance
//   {"ev":"msg","p":P,"o":O,"v":V}                     each record, as processed
//   {"ev":"commit","p":P,"o":O}                        each committed offset
// It commits after every batch (autoCommit) and runs until killed or
// SIGTERM (then it leaves the group).
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, group, topic, name] = process.argv.slice(2);
const kafka = new Kafka({ clientId: name, brokers: [bootstrap], logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId: group, sessionTimeout: 8000, heartbeatInterval: 1000,
                                  rebalanceTimeout: 20000, maxWaitTimeInMs: 200 });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

consumer.on(consumer.events.GROUP_JOIN, (e) => {
  out({ ev: 'join', t: Date.now(),
        parts: (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b) });
});
consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
  for (const t of e.payload.topics)
    for (const p of t.partitions) out({ ev: 'commit', p: Number(p.partition), o: Number(p.offset) });
});

(async () => {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      out({ ev: 'msg', p: partition, o: Number(message.offset), v: message.value.toString() });
    },
  });
  const stop = async () => { await consumer.disconnect(); process.exit(0); };
  process.on('SIGTERM', stop);
})().catch((e) => { console.error(e); process.exit(1); });
