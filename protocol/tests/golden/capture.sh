#!/usr/bin/env bash
# Captures golden Kafka protocol vectors from real clients.
#
# Builds mockbroker (librdkafka's mock cluster), starts it and recproxy.py in
# front of it, drives kcat, confluent-kafka-python, kafka-python and kafkajs
# through the proxy, then selects the frames into vectors/ with mkvectors.py
# and cross-checks them with kafka-python's protocol structs (check_vectors.py).
#
# usage: protocol/tests/golden/capture.sh [VECTORS_DIR]
# Needs: cc, librdkafka-dev (rdkafka_mock.h), kcat, /usr/bin/python3 with
# python3-kafka, python3-confluent-kafka, python3-snappy, python3-lz4 and
# python3-zstandard, node + npm (kafkajs is installed
# into compat-tests/js/node_modules from compat-tests/js/package-lock.json).
# Environment: KEEP_WORK=1 keeps the temporary directory (recording, logs).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=${1:-$HERE/vectors}
PY=/usr/bin/python3   # Debian's python3, which sees python3-kafka and python3-confluent-kafka
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-45}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/golden-capture.XXXXXX")
MOCK_PID=
PROXY_PID=

cleanup() {
    set +e
    exec 3>&- 2>/dev/null
    if [ -n "$PROXY_PID" ]; then kill -TERM "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
    if [ -n "$MOCK_PID" ]; then kill -TERM "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null; fi
    if [ "${KEEP_WORK:-0}" = 1 ]; then
        echo "capture: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "capture: $*" >&2; }

# --- tools -----------------------------------------------------------------
for tool in cc kcat node npm timeout; do
    command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
done
"$PY" -c 'import kafka, confluent_kafka, snappy, lz4, zstandard' || {
    log "$PY lacks some of python3-kafka python3-confluent-kafka python3-snappy python3-lz4 python3-zstandard"
    exit 1
}
if [ ! -f "$ROOT/compat-tests/js/node_modules/kafkajs/package.json" ]; then
    log "installing kafkajs into compat-tests/js/node_modules"
    (cd "$ROOT/compat-tests/js" && npm ci --no-audit --no-fund >&2)
fi
export NODE_PATH="$ROOT/compat-tests/js/node_modules"

log "building mockbroker"
cc -O1 -Wall -Wextra -o "$WORK/mockbroker" "$HERE/mockbroker.c" -lrdkafka

# --- mock broker and proxy -------------------------------------------------
# Topics: one per client and pass, plus the "-admin" topics that the admin
# clients create and delete (the mock has no CreateTopics: recproxy answers
# those requests, and the topics exist in the mock beforehand).
TOPICS=()
for pass in "" -low; do
    for t in kcat ck kp js; do
        TOPICS+=("golden-$t$pass:1" "golden-$t$pass-admin:1")
    done
done

mkfifo "$WORK/mock.in"
"$WORK/mockbroker" "${TOPICS[@]}" <"$WORK/mock.in" >"$WORK/mock.out" 2>"$WORK/mock.err" &
MOCK_PID=$!
exec 3>"$WORK/mock.in"   # the mock runs until this closes (or SIGTERM)
for _ in $(seq 50); do [ -s "$WORK/mock.out" ] && break; sleep 0.1; done
BOOT=$(head -n1 "$WORK/mock.out")
[ -n "$BOOT" ] || { log "mockbroker did not start"; cat "$WORK/mock.err" >&2; exit 1; }
log "mock broker at $BOOT"

SPECS=()
for c in kcat confluent_kafka kafka_python kafkajs; do
    SPECS+=("$c" "$c+admin" "$c+low" "$c+admin+low")
done
"$PY" "$HERE/recproxy.py" --upstream "$BOOT" --out "$WORK/rec" \
    --ports-file "$WORK/ports" "${SPECS[@]}" 2>"$WORK/proxy.err" &
PROXY_PID=$!
for _ in $(seq 50); do [ -s "$WORK/ports" ] && break; sleep 0.1; done
[ -s "$WORK/ports" ] || { log "recproxy did not start"; cat "$WORK/proxy.err" >&2; exit 1; }

addr() { echo "127.0.0.1:$(awk -v s="$1" '$1 == s { print $2 }' "$WORK/ports")"; }

FAILED=()
# run NAME CMD...: bounded client run; a failure is reported, not fatal.
run() {
    local name=$1
    shift
    log "run $name"
    echo "=== $name: $*" >>"$WORK/clients.log"
    if ! timeout -s INT -k 5 "$CLIENT_TIMEOUT" "$@" >>"$WORK/clients.log" 2>&1; then
        log "  $name failed (see clients.log with KEEP_WORK=1)"
        FAILED+=("$name")
    fi
}

kcat_runs() {   # PASS_SUFFIX
    local p=$1 b t ts
    b=$(addr "kcat${p:++low}")
    t=golden-kcat$p
    run "kcat$p metadata" kcat -b "$b" -L
    run "kcat$p metadata topic" kcat -b "$b" -L -t "$t"
    # librdkafka sends a batch uncompressed when compressing does not make it
    # smaller: the values repeat themselves so that every codec pays off.
    fill=abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc
    for z in none gzip snappy lz4 zstd; do
        run "kcat$p produce $z" sh -c "printf 'k1:kcat $z one $fill\nk2:kcat $z two $fill\nk3:kcat $z three $fill\n' |
            kcat -b '$b' -P -t '$t' -K: -z $z -H h=v -X linger.ms=20"
    done
    run "kcat$p produce idempotent" sh -c "printf 'k1:kcat idempotent one\nk2:kcat idempotent two\n' |
        kcat -b '$b' -P -t '$t' -K: -X enable.idempotence=true -X linger.ms=20"
    run "kcat$p consume beginning" kcat -b "$b" -C -t "$t" -o beginning -e -q
    run "kcat$p consume end" kcat -b "$b" -C -t "$t" -o end -e -q
    ts=$(( ($(date +%s) - 3600) * 1000 ))
    run "kcat$p consume timestamp" kcat -b "$b" -C -t "$t" -o "s@$ts" -e -q
    # No -o here: the offsets then come from OffsetFetch (none committed: earliest).
    run "kcat$p group" kcat -b "$b" -G "golden-kcat$p-group" "$t" -e -q \
        -X auto.offset.reset=earliest -X heartbeat.interval.ms=300 \
        -X auto.commit.interval.ms=300 -X session.timeout.ms=6000
}

confluent_runs() {
    local p=$1
    run "confluent$p produce" "$PY" "$HERE/clients/confluent_client.py" produce "$(addr "confluent_kafka${p:++low}")" "golden-ck$p"
    run "confluent$p consume" "$PY" "$HERE/clients/confluent_client.py" consume "$(addr "confluent_kafka${p:++low}")" "golden-ck$p"
    run "confluent$p admin" "$PY" "$HERE/clients/confluent_client.py" admin "$(addr "confluent_kafka+admin${p:++low}")" "golden-ck$p"
}

kafka_python_runs() {
    local p=$1
    run "kafka-python$p produce" "$PY" "$HERE/clients/kafka_python_client.py" produce "$(addr "kafka_python${p:++low}")" "golden-kp$p"
    run "kafka-python$p consume" "$PY" "$HERE/clients/kafka_python_client.py" consume "$(addr "kafka_python${p:++low}")" "golden-kp$p"
    run "kafka-python$p admin" "$PY" "$HERE/clients/kafka_python_client.py" admin "$(addr "kafka_python+admin${p:++low}")" "golden-kp$p"
}

kafkajs_runs() {
    local p=$1
    run "kafkajs$p produce" node "$HERE/clients/kafkajs_client.js" produce "$(addr "kafkajs${p:++low}")" "golden-js$p"
    run "kafkajs$p consume" node "$HERE/clients/kafkajs_client.js" consume "$(addr "kafkajs${p:++low}")" "golden-js$p"
    run "kafkajs$p admin" node "$HERE/clients/kafkajs_client.js" admin "$(addr "kafkajs+admin${p:++low}")" "golden-js$p"
}

# Default pass: versions negotiated against the mock's own ranges.
kcat_runs ""
confluent_runs ""
kafka_python_runs ""
kafkajs_runs ""
# Low pass: recproxy clamps the advertised ranges (see LOW_CLAMP in
# recproxy.py).  kafka-python is left out: from those ranges it infers a
# 0.10 broker and falls back to message format v1.
kcat_runs "-low"
confluent_runs "-low"
kafkajs_runs "-low"

kill -TERM "$PROXY_PID"
wait "$PROXY_PID" || true
PROXY_PID=

log "selecting vectors into $OUT"
"$PY" "$HERE/mkvectors.py" "$WORK/rec" "$OUT"
"$PY" "$HERE/check_vectors.py" "$OUT"
if [ -s "$WORK/proxy.err" ]; then
    log "recproxy stderr:"
    cat "$WORK/proxy.err" >&2
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    log "client runs that failed: ${FAILED[*]}"
    exit 1
fi
