#!/usr/bin/env bash
# 0004-kafkajs: kafkajs admin (create, metadata, offsets, configs, delete)
# and producer against one nuthatch.  Needs `npm ci` in compat-tests/js.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
js=$(cd "$(dirname "$0")/js" && pwd)
if ! command -v node >/dev/null || [ ! -d "$js/node_modules/kafkajs" ]; then
    echo "0004: node or kafkajs (npm ci in compat-tests/js) missing: skipped"
    exit 77
fi
nh_start || exit 1
(cd "$js" && timeout 120 node admin_produce.js "$NH_BOOTSTRAP")
status=$?
nh_stop
stop=$?
[ "$status" -eq 0 ] && [ "$stop" -eq 0 ] || {
    echo "0004-kafkajs: failed (client $status, server exit $stop)"
    grep -v DEBUG "$NH_DIR/server.log" | tail -30 >&2
    exit 1
}
echo "0004-kafkajs: ok"
