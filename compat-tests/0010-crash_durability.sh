#!/usr/bin/env bash
# 0010-crash_durability: nothing acknowledged is lost when the gateway dies.
#
# Four librdkafka producers (compat-tests/c/nh_client.c: acks=all, not
# idempotent, retrying through reconnects) write records with distinct keys,
# binary values and headers to 3 partitions of each of 2 topics, and append
# every successful delivery report to a file.  Meanwhile the gateway is killed
# with SIGKILL five times, each time in the middle of the stream, and
# restarted on the same port and data directory.  Then the producers stop and
# every partition is read from offset 0 to its high watermark:
#   - every acknowledged record is at its offset with the same key, value and
#     headers;
#   - each partition's offsets run from 0 to the high watermark - 1 without a
#     hole;
#   - no offset is acknowledged twice with different content, and a record
#     stored twice (a retry whose first acknowledgement was lost, which is
#     allowed) is byte-identical both times.
# Then a SIGTERM stop (exit 0 within 5 s), a restart and the same checks.
set -u
. "$(dirname "$0")/lib/nh_server.sh"

KILLS=5
PRODUCERS=4
NPARTS=3
TOPICS=(crash-a crash-b)

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ms() { date +%s%3N; }

# The librdkafka client: built by CMake next to nuthatch, else compiled here.
CLIENT=${NH_COMPAT_CLIENT:-$(dirname "$NUTHATCH")/nh_compat_client}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nh-crash.XXXXXX") || exit 1
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    nh_cleanup
    [ "${NH_KEEP:-0}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
if [ ! -x "$CLIENT" ]; then
    if ! pkg-config --exists rdkafka 2>/dev/null; then
        echo "0010: librdkafka (pkg-config rdkafka) not installed: skipped"
        exit 77
    fi
    CLIENT=$WORK/nh_compat_client
    # shellcheck disable=SC2046
    cc -O2 -o "$CLIENT" "$NH_ROOT/compat-tests/c/nh_client.c" $(pkg-config --cflags --libs rdkafka) ||
        exit 1
fi

# A fixed port below the ephemeral range: a restart must come back where the
# producers look for it, and no client's own connection can take it.
PORT=$(/usr/bin/python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass
    finally:
        s.close()
EOF
)
[ -n "$PORT" ] || { echo "no free port"; exit 1; }

start() {
    local i
    for i in 1 2 3; do
        nh_start --listeners "PLAINTEXT://127.0.0.1:$PORT" && return 0
        sleep 1
    done
    return 1
}

acked() { cat "$WORK"/acks.* 2>/dev/null | wc -l; }

# Wait (at most 30 s) until more than $1 records are acknowledged.
wait_acked_over() {
    local deadline=$(($(ms) + 30000))
    while [ "$(acked)" -le "$1" ]; do
        [ "$(ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# check LABEL: read back every partition and compare with the acknowledgements.
check() {
    local label=$1 dump=$WORK/dump.$1
    if ! timeout 180 "$CLIENT" dump "$NH_BOOTSTRAP" "$dump" "$NPARTS" "${TOPICS[@]}" \
        2>"$WORK/dump.$label.err"; then
        fail "$label: reading back failed: $(tail -5 "$WORK/dump.$label.err")"
        return
    fi
    /usr/bin/python3 - "$label" "$dump" "$WORK"/acks.* <<'EOF' || fail "$1: verification"
import collections, sys

label, dump, ackfiles = sys.argv[1], sys.argv[2], sys.argv[3:]
errors = []

def err(msg):
    if len(errors) < 20:
        print("FAIL: %s: %s" % (label, msg), file=sys.stderr)
    errors.append(msg)

def records(path):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                err("%s:%d: truncated line" % (path, n))
                continue
            fields = line[:-1].split("\t")
            if len(fields) != 6:
                err("%s:%d: %d fields" % (path, n, len(fields)))
                continue
            t, p, o, k, v, h = fields
            yield (t, int(p), int(o)), (k, v, h)

# The acknowledgements: one content per offset.
acked = {}
for path in ackfiles:
    for pos, content in records(path):
        old = acked.setdefault(pos, content)
        if old != content:
            err("%s[%d]@%d acknowledged twice with different content (keys %s, %s)"
                % (pos + (old[0], content[0])))

# The log: contiguous offsets from 0 in each partition.
log = {}
parts = collections.defaultdict(list)
for pos, content in records(dump):
    if pos in log:
        err("%s[%d]@%d read twice" % pos)
    log[pos] = content
    parts[pos[:2]].append(pos[2])
for tp, offs in sorted(parts.items()):
    if offs != list(range(len(offs))):
        missing = sorted(set(range(max(offs) + 1)) - set(offs))
        err("%s[%d]: offsets not contiguous from 0 (%d records, last %d, missing %s)"
            % (tp + (len(offs), max(offs), missing[:10])))

# Every acknowledged record, where it was acknowledged, unchanged.
lost = changed = 0
for pos, content in sorted(acked.items()):
    got = log.get(pos)
    if got is None:
        lost += 1
        err("%s[%d]@%d acknowledged (key %s) but not in the log" % (pos + (content[0],)))
    elif got != content:
        changed += 1
        err("%s[%d]@%d differs: acknowledged key %s value %.40s..., read key %s value %.40s..."
            % (pos + (content[0], content[1], got[0], got[1])))

# A key stored more than once (a retry) has the same content every time.
by_key = collections.defaultdict(set)
for pos, (k, v, h) in log.items():
    by_key[(pos[0], pos[1], k)].add((v, h))
dups = len(log) - len(by_key)
for key, contents in by_key.items():
    if len(contents) != 1:
        err("%s[%d] key %s stored with %d different contents" % (key + (len(contents),)))

print("%s: %d records acknowledged, %d in the log (%d not acknowledged, %d extra copies of "
      "retried records), %d lost, %d changed, %d partitions"
      % (label, len(acked), len(log), len(set(log) - set(acked)), dups, lost, changed,
         len(parts)))
sys.exit(1 if errors else 0)
EOF
}

start || exit 1
echo "gateway on 127.0.0.1:$PORT, data in $NH_DIR"
timeout 60 "$CLIENT" create "$NH_BOOTSTRAP" "$NPARTS" "${TOPICS[@]}" || { fail "creating topics"; exit 1; }

topic_list=$(IFS=,; echo "${TOPICS[*]}")
for i in $(seq 1 "$PRODUCERS"); do
    "$CLIENT" produce "$NH_BOOTSTRAP" "$WORK/acks.$i" "$i" "$NPARTS" "$topic_list" \
        2>"$WORK/producer.$i.err" &
    PIDS+=($!)
done

prev=0
for k in $(seq 1 "$KILLS"); do
    # Mid-stream: the producers are acknowledged again since the restart,
    # then a little longer.
    wait_acked_over "$prev" || { fail "before kill $k: no acknowledgement in 30 s"; break; }
    sleep "0.$((RANDOM % 9 + 1))"
    nh_kill
    now=$(acked)
    echo "kill $k: $now records acknowledged in all, $((now - prev)) since the $([ "$k" = 1 ] &&
        echo start || echo previous restart)"
    prev=$now
    sleep "0.$((RANDOM % 5))"
    start || { fail "restart $k"; break; }
done
wait_acked_over "$prev" || fail "after the last restart: no acknowledgement in 30 s"
sleep 1

# Stop the producers: they wait for what is outstanding, then exit.
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
for i in $(seq 1 "$PRODUCERS"); do
    wait "${PIDS[$((i - 1))]}" || fail "producer $i: $(tail -3 "$WORK/producer.$i.err")"
done
PIDS=()
grep -h 'acknowledged' "$WORK"/producer.*.err
echo "after the last restart: $(($(acked) - prev)) more acknowledged; $(acked) in all"

check after-kills

t0=$(ms)
nh_stop
status=$?
elapsed=$(($(ms) - t0))
echo "SIGTERM: exit status $status after $elapsed ms"
[ "$status" -eq 0 ] || fail "nuthatch exited $status after SIGTERM"
[ "$elapsed" -le 5000 ] || fail "SIGTERM took $elapsed ms (more than 5 s)"

start || { fail "restart after SIGTERM"; exit 1; }
check after-sigterm
nh_stop || fail "the last SIGTERM stop"

if [ "$failures" -ne 0 ]; then
    echo "0010-crash_durability: $failures failure(s)"
    grep -h -E 'WARN|ERROR' "$NH_DIR"/server.log* | tail -40 >&2
    exit 1
fi
echo "0010-crash_durability: ok"
