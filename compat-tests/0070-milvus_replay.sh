#!/usr/bin/env bash
# Milvus 2.5's use of Kafka replayed with librdkafka 2.0.2 and Milvus's own
# client settings (c/milvus_replay.c): 16 auto-created channels, time ticks
# every 200 ms, inserts up to ~2.5 MiB and 10 MiB messages, headers,
# consumers assigning at the earliest offset, at latest-minus-one and at a
# saved offset, watermark queries -- against the gateway's default limits.
# Then a SIGTERM restart and every channel read again from the stores.
#
# NH_REPLAY_SECONDS (default 180), NH_REPLAY_MIB (256) and NH_REPLAY_BIG (5,
# messages of 10 MiB) set the least the run does; the long variant (CTest
# label `long`) runs 600 s, 1 GiB and 20.
set -u
. "$(dirname "$0")/lib/nh_server.sh"
BIN=${NH_REPLAY:-$(dirname "$NUTHATCH")/nh_compat_milvus_replay}
[ -x "$BIN" ] || { echo "no $BIN (build first)"; exit 1; }
SECONDS_MIN=${NH_REPLAY_SECONDS:-180}
MIB_MIN=${NH_REPLAY_MIB:-256}
BIG_MIN=${NH_REPLAY_BIG:-5}

fail() {
    echo "0070-milvus_replay: $*" >&2
    [ -z "$NH_DIR" ] || tail -50 "$NH_DIR/server.log" >&2
    exit 1
}

nh_start || exit 1
state=$NH_DIR/replay.state
limit=$((SECONDS_MIN * 3 + 300))
timeout "$limit" "$BIN" run "$NH_BOOTSTRAP" by-dev "$SECONDS_MIN" "$MIB_MIN" "$BIG_MIN" "$state" ||
    fail "the replay failed"
nh_stop || fail "SIGTERM stop failed"
# Offsets are Milvus's message ids: after a restart every channel holds the
# same messages at the same offsets.
nh_start || exit 1
timeout 600 "$BIN" verify "$NH_BOOTSTRAP" by-dev "$state" || fail "verify after the restart failed"
nh_stop || fail "SIGTERM stop failed"
echo "0070-milvus_replay: ok"
