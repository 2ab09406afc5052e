#!/usr/bin/env bash
# 0022-kafkajs_group: a kafkajs 2.2.4 consumer group of two members, each its
# own Node process (js/group_member.js, session timeout 8 s, commits after
# every batch), on a 4-partition topic: the first consumes 100 records, the
# second joins and both own partitions; 100 more records; once every record
# is consumed and committed one member is killed with SIGKILL, 100 more
# records are produced, and the survivor owns every partition within the
# session timeout + 3 s and resumes each of the dead member's partitions
# exactly at its last commit (nothing lost, nothing consumed twice); its
# commits reach the end of every partition.  Then kafkajs admin
# (js/group_admin.js): ListGroups, DescribeGroups (Stable, one member),
# DeleteGroups refused (NON_EMPTY_GROUP); the survivor leaves (SIGTERM):
# Empty, DeleteGroups deletes its offsets, again GROUP_ID_NOT_FOUND.  Needs `npm ci` in
# compat-tests/js.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
js=$(cd "$(dirname "$0")/js" && pwd)
if ! command -v node >/dev/null || [ ! -d "$js/node_modules/kafkajs" ]; then
    echo "0022: node or kafkajs (npm ci in compat-tests/js) missing: skipped"
    exit 77
fi
fail() {
    echo "0022-kafkajs_group: $*"
    grep -v DEBUG "$NH_DIR/server.log" | tail -40 >&2
    for m in a b; do [ -n "${pids[$m]:-}" ] && kill -9 "${pids[$m]}" 2>/dev/null; done
    nh_stop
    exit 1
}
declare -A pids=()
nh_start --num.partitions 4 --group.initial.rebalance.delay.ms 500 || exit 1
out=$NH_DIR
produce() { (cd "$js" && timeout 60 node produce_n.js "$NH_BOOTSTRAP" kg "$1" "$2" 4) || fail "produce failed"; }
member() {
    (cd "$js" && exec node group_member.js "$NH_BOOTSTRAP" kg-group kg "member-$1") >"$out/$1.out" 2>"$out/$1.err" &
    pids[$1]=$!
}
# Python reads the members' event lines.
check() { /usr/bin/python3 - "$out" "$@" <<'PY'
import json, sys
out, what = sys.argv[1], sys.argv[2]
def events(m):
    evs = []
    try:
        lines = open("%s/%s.out" % (out, m)).readlines()
    except FileNotFoundError:
        return evs
    for line in lines:
        try:
            evs.append(json.loads(line))
        except ValueError:
            pass
    return evs
ev = {m: events(m) for m in ("a", "b")}
def last_join(m):
    j = [e for e in ev[m] if e["ev"] == "join"]
    return j[-1]["parts"] if j else None
def msgs(m, since=None):
    return [(e["p"], e["o"]) for e in ev[m] if e["ev"] == "msg"]
def commits(m):
    c = {}
    for e in ev[m]:
        if e["ev"] == "commit":
            c[e["p"]] = e["o"]
    return c
if what == "split":  # both own partitions, together all four
    a, b = last_join("a"), last_join("b")
    sys.exit(0 if a and b and sorted(a + b) == [0, 1, 2, 3] else 1)
if what == "consumed":  # N distinct records consumed, each member's commits at its ends
    n = int(sys.argv[3])
    got = set(msgs("a")) | set(msgs("b"))
    if len(got) < n:
        sys.exit(1)
    for m in ("a", "b"):
        ends = {}
        for p, o in msgs(m):
            ends[p] = max(ends.get(p, -1), o + 1)
        c = commits(m)
        for p in last_join(m) or []:
            if p in ends and c.get(p) != ends[p]:
                sys.exit(1)
    sys.exit(0)
if what == "all_to_a":  # a's latest assignment is every partition; prints when
    j = [e for e in ev["a"] if e["ev"] == "join"]
    if j and j[-1]["parts"] == [0, 1, 2, 3]:
        print(j[-1]["t"])
        sys.exit(0)
    sys.exit(1)
if what == "final":
    n = int(sys.argv[3])
    b_parts = [int(x) for x in sys.argv[4].split(",")]
    b_commit = commits("b")
    bm = msgs("b")
    am = msgs("a")
    dup = len(am + bm) - len(set(am + bm))
    ok = True
    if len(set(am) | set(bm)) != n:
        print("distinct records consumed: %d of %d" % (len(set(am) | set(bm)), n)); ok = False
    if dup:
        print("%d records consumed twice" % dup); ok = False
    last = max(i for i, e in enumerate(ev["a"]) if e["ev"] == "join")
    after = [(e["p"], e["o"]) for e in ev["a"][last:] if e["ev"] == "msg"]
    for p in b_parts:
        first = min([o for (q, o) in after if q == p], default=None)
        if first is None or first != b_commit.get(p):
            print("partition %d: the survivor started at %s, the dead member had committed %s"
                  % (p, first, b_commit.get(p))); ok = False
    ac = commits("a")
    ends = {}
    for p, o in am + bm:
        ends[p] = max(ends.get(p, -1), o + 1)
    for p in range(4):
        if ac.get(p) != ends.get(p):
            print("partition %d: survivor committed %s, end %s" % (p, ac.get(p), ends.get(p))); ok = False
    print("b's partitions %s, its last commits %s; a's commits %s" % (b_parts, b_commit, ac))
    sys.exit(0 if ok else 1)
if what == "parts":
    print(",".join(str(p) for p in last_join(sys.argv[3]) or []))
PY
}
wait_for() {  # wait_for SECONDS CHECK ARGS...
    local deadline=$((SECONDS + $1)); shift
    until check "$@" >/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

produce 0 100
member a
wait_for 30 consumed 100 || fail "member a did not consume and commit 100 records: $(cat "$out/a.err")"
member b
wait_for 60 split || fail "no split between the two members: a $(check parts a), b $(check parts b)"
produce 100 100
wait_for 30 consumed 200 || fail "not every record consumed and committed"
sleep 2  # idle: nothing in flight when the member dies
b_parts=$(check parts b)
t0=$(date +%s%3N)
kill -9 "${pids[b]}"
wait "${pids[b]}" 2>/dev/null
unset 'pids[b]'
produce 200 100
wait_for 30 all_to_a || fail "the survivor does not own every partition"
t1=$(check all_to_a)
took=$((t1 - t0))
echo "0022: the survivor owned every partition ${took} ms after the kill (session timeout 8000 ms)"
[ "$took" -le 11000 ] || fail "takeover took ${took} ms (> session timeout + 3 s)"
wait_for 60 consumed 300 || fail "not every record consumed after the takeover"
sleep 1
check final 300 "$b_parts" || fail "offsets lost or consumed twice"
(cd "$js" && timeout 60 node group_admin.js "$NH_BOOTSTRAP" kg-group kg live) || fail "admin on the live group"
kill -TERM "${pids[a]}"
wait "${pids[a]}"
(cd "$js" && timeout 60 node group_admin.js "$NH_BOOTSTRAP" kg-group kg gone) || fail "admin on the empty group"
nh_stop || { echo "0022-kafkajs_group: server exit status $?"; exit 1; }
echo "0022-kafkajs_group: ok"
