#!/usr/bin/env bash
# 0090-cluster_membership: three gateways on one etcd and one S3-protocol
# server (lib/nh_cluster.sh) register under leases and name each other.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  cluster.lease.ms is
# 3000.  Every node's Metadata v4 and DescribeCluster v0 (hand-encoded,
# lib/cluster_view.py) must list exactly the live nodes, each at its own
# port, with the lowest live id as controller:
#   1. nodes 1, 2 and 3 started one after the other: all three, controller 1;
#      kcat -L through node 3 agrees;
#   2. node 1 killed with SIGKILL: nodes 2 and 3 drop it within the lease
#      plus 5 s (the time is printed) and name 2 the controller;
#   3. node 1 restarted: back in every view, controller 1 again;
#   4. node 2 killed and restarted at once, before its old lease expired: it
#      takes its registration over, and is still listed after the old lease
#      had time to expire (4 s later);
#   NH_CLUSTER_LOOPS=N (default 1; 5 in the long target) repeats 2-4;
#   4b. node 2 paused (SIGSTOP) past its lease: the others drop it; resumed
#      (SIGCONT), it registers again under a new lease and is back in every
#      view within 10 s;
#   5. node 3 stopped with SIGTERM: it exits 0 and leaves the other views
#      within 2 s (its lease is revoked, not left to expire).
set -u
. "$(dirname "$0")/lib/nh_cluster.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0090-cluster_membership: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
LEASE_MS=3000
NHC_ARGS=(--cluster.lease.ms "$LEASE_MS")

# The view node $1 reports: two lines (Metadata, DescribeCluster).
view() { timeout 20 /usr/bin/python3 "$(dirname "$0")/lib/cluster_view.py" "127.0.0.1:${NHC_PORT[$1]}"; }

# What every view must say when the live nodes are "$@" (ascending).
expected() {
    local b="" i
    for i in "$@"; do b+="${b:+,}$i@127.0.0.1:${NHC_PORT[i]}"; done
    echo "controller=$1 brokers=$b"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Wait at most $1 tenths of a second until every node in $2 (a list) reports
# the nodes in $3 (a list) in both answers; WAITED: the milliseconds waited.
WAITED=0
await_view() {
    local tenths=$1 asking=$2 live=$3 want n ok start deadline
    # shellcheck disable=SC2086
    want=$(expected $live)
    start=$(now_ms)
    deadline=$((start + tenths * 100))
    while :; do
        ok=1
        for n in $asking; do
            [ "$(view "$n")" = "$(printf '%s\n%s' "$want" "$want")" ] || { ok=0; break; }
        done
        if [ "$ok" = 1 ]; then
            WAITED=$(($(now_ms) - start))
            return 0
        fi
        [ "$(now_ms)" -lt "$deadline" ] || break
        sleep 0.1
    done
    for n in $asking; do
        fail "node $n reports '$(view "$n" | tr '\n' '|')', expected '$want' (live: $live)"
    done
    return 1
}

nhc_init 3 || exit 1
for i in 1 2 3; do
    nhc_start "$i" || exit 1
done

# 1. Everyone sees everyone.
await_view 100 "1 2 3" "1 2 3"
if command -v kcat >/dev/null; then
    out=$(timeout 20 kcat -b "127.0.0.1:${NHC_PORT[3]}" -L 2>&1)
    echo "$out" | grep -q "^ *3 brokers:" || fail "kcat -L via node 3: $out"
    echo "$out" | grep -q "broker 1 at 127.0.0.1:${NHC_PORT[1]} (controller)" ||
        fail "kcat -L via node 3 does not name node 1 the controller: $out"
    echo "$out" | grep -q "broker 2 at 127.0.0.1:${NHC_PORT[2]}\$" || fail "kcat -L: no node 2: $out"
fi

for ((loop = 0; loop < ${NH_CLUSTER_LOOPS:-1}; loop++)); do
# 2. A killed node leaves within its lease (plus slack for a loaded machine).
nhc_kill 1
if await_view $((LEASE_MS / 100 + 50)) "2 3" "2 3"; then
    echo "node 1 (SIGKILL) left the views after $WAITED ms (lease $LEASE_MS ms)"
fi

# 3. It comes back.
nhc_start 1 || exit 1
await_view 100 "1 2 3" "1 2 3"

# 4. A restart before the old lease expired takes the registration over.
nhc_kill 2
nhc_start 2 || exit 1
grep -q "registered already" "$NH_DIR/node2.log" ||
    fail "node 2 restarted at once did not report taking its registration over"
await_view 100 "1 2 3" "1 2 3"
sleep $((LEASE_MS / 1000 + 1))
await_view 0 "1 2 3" "1 2 3" || fail "node 2 vanished when its previous run's lease expired"
done

# 4b. A node paused past its lease comes back by itself.
kill -STOP "${NHC_PID[2]}"
await_view $((LEASE_MS / 100 + 50)) "1 3" "1 3"
kill -CONT "${NHC_PID[2]}"
if await_view 100 "1 2 3" "1 2 3"; then
    echo "node 2 (SIGCONT after its lease expired) back after $WAITED ms"
fi
grep -q "registering again" "$NH_DIR/node2.log" ||
    fail "node 2 did not log that it registered again after its pause"

# 5. A graceful stop revokes the lease.
nhc_stop 3
status=$?
[ "$status" -eq 0 ] || fail "node 3 exited $status on SIGTERM"
await_view 20 "1 2" "1 2" && echo "node 3 (SIGTERM) left after $WAITED ms"

for i in 1 2; do
    nhc_stop "$i" || fail "node $i exited $? on SIGTERM"
done
if [ "$failures" -ne 0 ]; then
    for i in 1 2 3; do
        echo "--- node $i log (tail)" >&2
        tail -20 "$NH_DIR/node$i.log" >&2
    done
    echo "0090-cluster_membership: $failures failure(s)"
    exit 1
fi
echo "0090-cluster_membership: ok"
