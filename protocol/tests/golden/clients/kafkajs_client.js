'use strict'
// Drives kafkajs 2.2.4 against a broker, for capture.sh.
// usage: node kafkajs_client.js MODE BOOTSTRAP TOPIC   (MODE: produce | consume | admin)
// kafkajs is resolved from compat-tests/js/node_modules (NODE_PATH).
const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const [mode, bootstrap, topic] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'golden-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  requestTimeout: 10000,
  retry: { retries: 3, initialRetryTime: 200 },
})

async function produce() {
  const p = kafka.producer({ allowAutoTopicCreation: true })
  await p.connect()
  for (const [name, c] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    await p.send({
      topic,
      compression: c,
      messages: [0, 1, 2].map(i => ({ key: `k${i}`, value: `kafkajs ${name} #${i}`, headers: { h: `v${i}` } })),
    })
  }
  await p.disconnect()
  const ip = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await ip.connect()
  await ip.send({ topic, acks: -1, messages: [{ key: 'ki', value: 'kafkajs idempotent' }] })
  await ip.disconnect()
  console.log('kafkajs produced')
}

async function consume() {
  const c = kafka.consumer({ groupId: 'golden-kafkajs-group', heartbeatInterval: 300, sessionTimeout: 6000 })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  let got = 0
  let resolveDone
  const done = new Promise(r => { resolveDone = r })
  await c.run({
    autoCommit: false,
    eachMessage: async ({ topic: t, partition, message }) => {
      got++
      await c.commitOffsets([{ topic: t, partition, offset: (BigInt(message.offset) + 1n).toString() }])
      resolveDone()
    },
  })
  await Promise.race([done, new Promise(r => setTimeout(r, 20000))])
  await new Promise(r => setTimeout(r, 1500)) // heartbeats
  const admin = kafka.admin()
  await admin.connect()
  const offs = await admin.fetchOffsets({ groupId: 'golden-kafkajs-group', topics: [topic] })
  await admin.disconnect()
  await c.disconnect()
  console.log('kafkajs consumed', got, 'committed', JSON.stringify(offs))
}

async function admin() {
  const a = kafka.admin()
  await a.connect()
  const name = `${topic}-admin`
  await a.createTopics({ topics: [{ topic: name, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true, timeout: 5000 })
  await a.deleteTopics({ topics: [name], timeout: 5000 })
  await a.disconnect()
  console.log('kafkajs admin: created and deleted', name)
}

const modes = { produce, consume, admin }
if (!modes[mode]) {
  console.error('unknown mode', mode)
  process.exit(2)
}
modes[mode]().then(() => process.exit(0), e => { console.error(e); process.exit(1) })
