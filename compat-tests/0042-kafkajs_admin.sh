#!/usr/bin/env bash
# 0042-kafkajs_admin: kafkajs 2.2.4 admin (js/admin_more.js) --
# createPartitions, deleteTopicRecords, describeConfigs, alterConfigs,
# describeCluster, fetchTopicOffsetsByTimestamp -- then a restart of the
# gateway and the same state checked again.  Needs `npm ci` in compat-tests/js.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
js=$(cd "$(dirname "$0")/js" && pwd)
if ! command -v node >/dev/null || [ ! -d "$js/node_modules/kafkajs" ]; then
    echo "0042: node or kafkajs (npm ci in compat-tests/js) missing: skipped"
    exit 77
fi
fail() {
    echo "0042-kafkajs_admin: $*"
    grep -v DEBUG "$NH_DIR/server.log" | tail -30 >&2
    nh_stop
    exit 1
}
nh_start || exit 1
(cd "$js" && timeout 120 node admin_more.js "$NH_BOOTSTRAP" before) || fail "before the restart"
nh_stop || fail "stop exited $?"
nh_start || exit 1
(cd "$js" && timeout 120 node admin_more.js "$NH_BOOTSTRAP" after) || fail "after the restart"
nh_stop || fail "stop exited $?"
echo "0042-kafkajs_admin: ok"
