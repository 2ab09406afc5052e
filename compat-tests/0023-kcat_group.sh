#!/usr/bin/env bash
# 0023-kcat_group: kcat -G (librdkafka's balanced consumer) reads a
# 2-partition topic to its end in a group and commits on exit; a second run
# of the group reads nothing again; then librdkafka's admin API
# (compat-tests/c/group_admin.c): OffsetDelete of one partition, of a missing
# group (GROUP_ID_NOT_FOUND), of a topic a live member is subscribed to
# (GROUP_SUBSCRIBED_TO_TOPIC), DeleteGroups of a group with a member
# (NON_EMPTY_GROUP), of the group (its offsets gone), and again
# (GROUP_ID_NOT_FOUND).
set -u
. "$(dirname "$0")/lib/nh_server.sh"
BIN=${NH_GROUP_ADMIN:-$(dirname "$NUTHATCH")/nh_compat_group_admin}
[ -x "$BIN" ] || { echo "no $BIN (build first)"; exit 1; }
command -v kcat >/dev/null || { echo "0023: kcat missing: skipped"; exit 77; }
fail() {
    echo "0023-kcat_group: $*"
    grep -v DEBUG "$NH_DIR/server.log" | tail -30 >&2
    nh_stop
    exit 1
}
nh_start --num.partitions 2 --group.initial.rebalance.delay.ms 300 || exit 1
for p in 0 1; do
    seq 1 10 | sed "s/^/p$p-/" | kcat -b "$NH_BOOTSTRAP" -P -t kc -p $p -X acks=all || fail "produce"
done
got=$(timeout 60 kcat -b "$NH_BOOTSTRAP" -G kc-group -X auto.offset.reset=earliest -e -q \
    -f '%p %o %s\n' kc) || fail "kcat -G failed"
n=$(printf '%s\n' "$got" | grep -c ' p')
[ "$n" -eq 20 ] || fail "kcat -G read $n records, not 20: $got"
again=$(timeout 60 kcat -b "$NH_BOOTSTRAP" -G kc-group -X auto.offset.reset=earliest -e -q \
    -f '%p %o %s\n' kc) || fail "second kcat -G failed"
[ -z "$again" ] || fail "the group read again after its commits: $again"
timeout 120 "$BIN" "$NH_BOOTSTRAP" kc-group kc || fail "group admin checks"
nh_stop || { echo "0023-kcat_group: server exit status $?"; exit 1; }
echo "0023-kcat_group: ok"
