// group_admin.js BOOTSTRAP GROUP TOPIC live|gone: kafkajs admin on a consumer
// group (used by 0022-kafkajs_group.sh).  live: the group is listed and
// described Stable with one member, and DeleteGroups refuses it
// (NON_EMPTY_GROUP).  gone (its members have left): it is listed and
// described Empty with protocol type "consumer" (kept in the store),
// DeleteGroups deletes it, its offsets are gone, and a second DeleteGroups
// is GROUP_ID_NOT_FOUND.  Exits 1 with a message on the first mismatch.
const assert = require('assert');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, group, topic, phase] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'nh-admin', brokers: [bootstrap], logLevel: logLevel.NOTHING });

async function deleteError(admin) {
  try {
    await admin.deleteGroups([group]);
    return null;
  } catch (e) {
    return e.groups ? e.groups[0].error.type : String(e);
  }
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  const listed = (await admin.listGroups()).groups.find((g) => g.groupId === group);
  assert.ok(listed, 'group listed');
  // Its protocol type is kept once a generation was stable, members or not.
  assert.strictEqual(listed.protocolType, 'consumer');
  const d = (await admin.describeGroups([group])).groups[0];
  if (phase === 'live') {
    assert.strictEqual(d.state, 'Stable');
    assert.strictEqual(d.members.length, 1);
    assert.strictEqual(d.protocolType, 'consumer');
    assert.strictEqual(await deleteError(admin), 'NON_EMPTY_GROUP');
  } else {
    assert.strictEqual(d.state, 'Empty');
    assert.strictEqual(d.protocolType, 'consumer');
    assert.strictEqual(d.members.length, 0);
    assert.strictEqual(await deleteError(admin), null);
    const offs = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    for (const p of offs[0].partitions) assert.strictEqual(p.offset, '-1');
    assert.strictEqual(await deleteError(admin), 'GROUP_ID_NOT_FOUND');
    const again = (await admin.listGroups()).groups.find((g) => g.groupId === group);
    assert.strictEqual(again, undefined);
  }
  await admin.disconnect();
  console.log('group_admin ' + phase + ': ok');
})().catch((e) => { console.error(e); process.exit(1); });
