#!/usr/bin/env bash
# librdkafka (a C program, compat-tests/c/roundtrip.c): records with keys,
# headers and timestamps under every codec, read back by assign + seek,
# watermarks, offsets for times, offsets committed without a group -- then a
# restart, and all of it again from the object store and the metadata store.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
BIN=${NH_ROUNDTRIP:-$(dirname "$NUTHATCH")/nh_compat_roundtrip}
[ -x "$BIN" ] || { echo "no $BIN (build first)"; exit 1; }

nh_start || exit 1
timeout 300 "$BIN" "$NH_BOOTSTRAP" produce || { cat "$NH_DIR/server.log" >&2; exit 1; }
nh_stop || { echo "SIGTERM stop failed"; exit 1; }
# Small caches so the second pass reads from the object store.
nh_start --tail.cache.bytes 0 --read.cache.bytes 1048576 || exit 1
timeout 300 "$BIN" "$NH_BOOTSTRAP" verify || { cat "$NH_DIR/server.log" >&2; exit 1; }
nh_stop || { echo "SIGTERM stop failed"; exit 1; }
echo "0006-librdkafka_roundtrip: ok"
