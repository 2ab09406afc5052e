#!/usr/bin/env bash
# 0001-kcat_roundtrip: kcat (librdkafka) against one nuthatch -- metadata,
# produce with auto-creation (acks=all and acks=1, each codec), consume from
# the beginning and from an offset, and a graceful stop that exits 0.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
command -v kcat >/dev/null || { echo "0001: kcat not installed: skipped"; exit 77; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
K() { timeout 30 kcat -b "$NH_BOOTSTRAP" "$@"; }

nh_start --num.partitions 2 || exit 1

K -L >"$NH_DIR/meta0" 2>&1 || fail "kcat -L failed: $(cat "$NH_DIR/meta0")"
grep -q "broker 1 at 127.0.0.1:$NH_PORT (controller)" "$NH_DIR/meta0" ||
    fail "metadata does not name this broker as controller: $(cat "$NH_DIR/meta0")"

# Produce 100 keyed messages per codec, then read them all back.
for codec in none gzip snappy lz4 zstd; do
    seq 1 100 | sed "s/^/$codec-/" >"$NH_DIR/in-$codec"
    K -P -t "rt-$codec" -z "$codec" -X acks=all -p 0 <"$NH_DIR/in-$codec" 2>"$NH_DIR/perr" ||
        fail "produce ($codec): $(cat "$NH_DIR/perr")"
    K -C -t "rt-$codec" -p 0 -o beginning -e -q >"$NH_DIR/out-$codec" 2>"$NH_DIR/cerr" ||
        fail "consume ($codec): $(cat "$NH_DIR/cerr")"
    cmp -s "$NH_DIR/in-$codec" "$NH_DIR/out-$codec" ||
        fail "$codec: consumed $(wc -l <"$NH_DIR/out-$codec") lines, not what was produced"
done

# Keys, offsets and acks=1 on a second partition.
printf 'k1:v1\nk2:v2\nk3:v3\n' | K -P -t rt-keys -p 1 -K : -X acks=1 2>/dev/null ||
    fail "produce with keys"
got=$(K -C -t rt-keys -p 1 -o 1 -e -q -f '%k=%s@%o\n' 2>/dev/null)
[ "$got" = "$(printf 'k2=v2@1\nk3=v3@2')" ] || fail "consume from offset 1: '$got'"

K -L -t rt-keys >"$NH_DIR/meta1" 2>&1
grep -q 'topic "rt-keys" with 2 partitions' "$NH_DIR/meta1" ||
    fail "rt-keys metadata: $(cat "$NH_DIR/meta1")"

# A consumer waiting at the end gets a message produced later (long poll).
echo first | K -P -t rt-late -p 0 2>/dev/null || fail "produce rt-late"
(K -C -t rt-late -p 0 -o 1 -c 1 -q >"$NH_DIR/late" 2>/dev/null) &
waiter=$!
sleep 1
echo late-message | K -P -t rt-late -p 0 2>/dev/null || fail "produce rt-late"
wait "$waiter" || fail "waiting consumer failed"
[ "$(cat "$NH_DIR/late")" = late-message ] || fail "waiting consumer got '$(cat "$NH_DIR/late")'"

nh_stop
status=$?
[ "$status" -eq 0 ] || fail "nuthatch exited $status after SIGTERM"

# Everything acknowledged survives a restart.
nh_start || exit 1
K -C -t rt-zstd -p 0 -o beginning -e -q >"$NH_DIR/out-restart" 2>/dev/null
cmp -s "$NH_DIR/in-zstd" "$NH_DIR/out-restart" || fail "after a restart: data differs"
nh_stop || fail "second stop"

if [ "$failures" -ne 0 ]; then
    echo "0001-kcat_roundtrip: $failures failure(s)"
    sed -n '1,200p' "$NH_DIR/server.log" | grep -v DEBUG | tail -40 >&2
    exit 1
fi
echo "0001-kcat_roundtrip: ok"
