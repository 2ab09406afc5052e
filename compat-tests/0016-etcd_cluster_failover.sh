#!/usr/bin/env bash
# 0016-etcd_cluster_failover: the gateway moves to another member of a
# 3-member etcd cluster when the one it uses dies.
#
# S3 + etcd only (NH_BACKEND=s3; skipped otherwise).  etcd runs as a cluster
# of 3 members on loopback and the gateway gets all three in metadata.url.
# Three librdkafka producers (c/nh_client.c: acks=all, every delivery report
# recorded) write to 2 topics of 2 partitions while
#   1. the member the gateway is connected to (found from the gateway's own
#      sockets) is killed with SIGKILL, then restarted on its data;
#   2. the same again: the member it moved to is killed, then restarted;
#   3. the raft leader is killed (an election under load), then restarted.
# Acknowledgements must resume within 5 s of the cluster serving again
# (every survivor healthy; after the leader's death, once a new one is
# elected) without the producers restarting (the times, and the longest
# stall of the acknowledgements, are printed); after each round every
# acknowledged record reads back at its offset, unchanged, offsets without
# holes (lib/check_acks.py).  The gateway compacts etcd's revision history
# (metadata.compaction.interval.ms, 1 s here): by the end the oldest
# revision etcd serves is in the later half of its history.  At the end: producers stopped (none lost a
# record), SIGTERM stop, restart, the same check from the stores alone.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
. "$(dirname "$0")/lib/durability.sh"

if [ "$NH_BACKEND" != s3 ]; then
    echo "0016-etcd_cluster_failover: a test of the S3 + etcd configuration (NH_BACKEND=s3): skipped"
    exit 77
fi

export NH_ETCD_MEMBERS=3
PRODUCERS=3
NPARTS=2
TOPICS=(failover-a failover-b)

# The etcd member (0-2) the gateway holds established connections to; -1
# when none (it keeps one endpoint while it works, DESIGN §5).
member_in_use() {
    /usr/bin/python3 - "$NH_PID" "${NH_ETCD_URLS[@]}" <<'EOF'
import os, sys
pid, urls = sys.argv[1], sys.argv[2:]
ports = [int(u.rsplit(":", 1)[1]) for u in urls]
inodes = set()
for fd in os.listdir("/proc/%s/fd" % pid):
    try:
        link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
    except OSError:
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
count = [0] * len(ports)
with open("/proc/%s/net/tcp" % pid) as f:
    next(f)
    for line in f:
        parts = line.split()
        state, inode = parts[3], parts[9]
        rport = int(parts[2].split(":")[1], 16)
        if state == "01" and inode in inodes and rport in ports:
            count[ports.index(rport)] += 1
best = max(range(len(ports)), key=lambda i: count[i])
print(best if count[best] > 0 else -1)
EOF
}

# The member that is raft leader now (0-2), from any live member's status.
raft_leader() {
    local i st leader id j
    for i in 0 1 2; do
        [ -n "${NH_ETCD_PIDS[$i]:-}" ] || continue
        st=$(curl -fsS -m 2 -X POST -d '{}' "${NH_ETCD_URLS[$i]}/v3/maintenance/status" 2>/dev/null) ||
            continue
        leader=$(echo "$st" | sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p')
        [ -n "$leader" ] || continue
        for j in 0 1 2; do
            [ -n "${NH_ETCD_PIDS[$j]:-}" ] || continue
            id=$(curl -fsS -m 2 -X POST -d '{}' "${NH_ETCD_URLS[$j]}/v3/maintenance/status" |
                sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p')
            [ "$id" != "$leader" ] || { echo "$j"; return 0; }
        done
    done
    echo -1
}

# Wait until every member answers /health (a restarted one rejoined).
all_healthy() {
    local i deadline=$(($(ms) + 30000))
    for i in 0 1 2; do
        until svc_answers "etcd$i"; do
            [ "$(ms)" -lt "$deadline" ] || { fail "etcd member $i not healthy within 30 s"; return 1; }
            sleep 0.1
        done
    done
}

# True when every live member answers /health (etcd says false while a
# member has no leader): the cluster serves again.
cluster_serves() {
    local i
    for i in 0 1 2; do
        [ -z "${NH_ETCD_PIDS[$i]:-}" ] ||
            curl -fsS -m 0.5 "${NH_ETCD_URLS[$i]}/health" 2>/dev/null | grep -q '"health":"true"' ||
            return 1
    done
}

# kill_round LABEL MEMBER: SIGKILL the member; for WATCH_MS after it,
# sample the acknowledgements: the longest time without a new one (a
# stall), and the time from the cluster serving again (every survivor
# healthy: after an election when the leader died) to the next one, which
# must be within $DUR_RECOVERY_MS.  Then check, and restart the member.
WATCH_MS=8000
kill_round() {
    local label=$1 m=$2 a0 t0 b0 b now last stall=0 end serving=0 resumed=-1
    a0=$(dur_acked)
    b0=$(dur_ack_bytes)
    t0=$(ms)
    svc_kill "etcd$m"
    echo "$label: etcd member $m killed with $a0 records acknowledged"
    last=$t0
    end=$((t0 + WATCH_MS))
    while now=$(ms) && [ "$now" -lt "$end" ]; do
        if [ "$serving" -eq 0 ] && cluster_serves; then
            serving=$(ms)
            b0=$(dur_ack_bytes)
        fi
        b=$(dur_ack_bytes)
        if [ "$b" -gt "$b0" ]; then
            [ $((now - last)) -le "$stall" ] || stall=$((now - last))
            last=$now
            b0=$b
            [ "$serving" -eq 0 ] || [ "$resumed" -ge 0 ] || resumed=$((now - serving))
        fi
        sleep 0.05
    done
    [ $((end - last)) -le "$stall" ] || stall=$((end - last))
    echo "$label: the cluster served again $((serving - t0)) ms after the kill," \
        "acknowledgements $resumed ms after that; longest stall $stall ms;" \
        "$(($(dur_acked) - a0)) acknowledged in $WATCH_MS ms; the gateway now uses member $(member_in_use)"
    if [ "$serving" -eq 0 ]; then
        fail "$label: the surviving members were not healthy within $WATCH_MS ms"
    elif [ "$resumed" -lt 0 ] || [ "$resumed" -gt "$DUR_RECOVERY_MS" ]; then
        fail "$label: acknowledgements resumed $resumed ms after the cluster served again (limit $DUR_RECOVERY_MS ms)"
    fi
    [ $((end - last)) -lt 1000 ] || fail "$label: acknowledgements stopped after the kill"
    STALLS+=("$label=${stall}ms")
    dur_check --live "$label" "$NPARTS" "${TOPICS[@]}"
    svc_restart "etcd$m"
    all_healthy
    sleep 1
}

# The oldest revision etcd still serves (its history is compacted up to
# it), from member 0: a read at an older one is refused as compacted.
# Binary search between 1 and the current revision $1.
oldest_revision() {
    local lo=1 hi=$1 mid out
    while [ "$lo" -lt "$hi" ]; do
        mid=$(((lo + hi) / 2))
        out=$(curl -sS -m 2 -X POST -d "{\"key\":\"AA==\",\"revision\":\"$mid\"}" \
            "${NH_ETCD_URLS[0]}/v3/kv/range")
        if echo "$out" | grep -q compacted; then lo=$((mid + 1)); else hi=$mid; fi
    done
    echo "$lo"
}

STALLS=()
dur_init 0016
# Compaction of etcd's history every second (the default is 5 minutes).
COMPACT_MS=1000
dur_start --metadata.compaction.interval.ms "$COMPACT_MS" || exit 1
echo "gateway on 127.0.0.1:$PORT (pid $NH_PID), etcd members $NH_ETCD_ENDPOINTS, s3rver at $NH_S3_ENDPOINT"
timeout 60 "$CLIENT" create "$NH_BOOTSTRAP" "$NPARTS" "${TOPICS[@]}" || { fail "creating topics"; exit 1; }
dur_produce "$PRODUCERS" "$NPARTS" "${TOPICS[@]}"
dur_wait_acked_over 2000 || { fail "no acknowledgements before the faults"; exit 1; }
dur_check --live before "$NPARTS" "${TOPICS[@]}"

for round in 1 2; do
    m=$(member_in_use)
    if [ "$m" -lt 0 ]; then
        fail "round $round: the gateway holds no connection to any etcd member"
        break
    fi
    kill_round "in-use-$round" "$m"
done

m=$(raft_leader)
if [ "$m" -lt 0 ]; then
    fail "no raft leader found"
else
    echo "leader: member $m leads the cluster; the gateway uses member $(member_in_use)"
    kill_round leader "$m"
fi

# The gateway compacts etcd's history, one interval behind: compacted far
# past the start, and not beyond the current revision.
cur=$(curl -fsS -m 2 -X POST -d '{"key":"AA=="}' "${NH_ETCD_URLS[0]}/v3/kv/range" |
    sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
c1=$(oldest_revision "${cur:-1}")
echo "etcd: history compacted up to revision $c1 of ${cur:-?}"
if [ -z "$cur" ] || [ "$c1" -le $((cur / 2)) ]; then
    fail "etcd's history is not compacted by the gateway (oldest revision $c1, current ${cur:-?})"
fi

dur_stop_producers
echo "$(dur_acked) records acknowledged in all"
dur_check after-faults "$NPARTS" "${TOPICS[@]}"

nh_stop || fail "nuthatch exited $? after SIGTERM"
dur_start --metadata.compaction.interval.ms "$COMPACT_MS" || { fail "restart after SIGTERM"; exit 1; }
dur_check after-sigterm "$NPARTS" "${TOPICS[@]}"
nh_stop || fail "the last SIGTERM stop"

echo "longest stall after each kill: ${STALLS[*]} (limit $DUR_RECOVERY_MS ms)"
if [ "$failures" -ne 0 ]; then
    echo "0016-etcd_cluster_failover: $failures failure(s)"
    grep -h -E 'WARN|ERROR' "$NH_DIR"/server.log* | tail -40 >&2
    exit 1
fi
echo "0016-etcd_cluster_failover: ok"
