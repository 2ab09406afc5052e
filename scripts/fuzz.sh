#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan), replay each seed corpus,
# then fuzz each target for FUZZ_SECONDS on a scratch copy of its corpus.
# A crash is copied into the target's committed corpus as a new seed and the
# script fails, so the finding is kept and fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-30}
JOBS=$(nproc 2>/dev/null || echo 2)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNH_FUZZ=ON -DNH_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j "$JOBS"

# target:source:committed seed corpus (CMakeLists.txt builds the same list)
TARGETS="
fuzz_request:protocol/fuzz/fuzz_request.c:protocol/fuzz/corpus/request
fuzz_batch:protocol/fuzz/fuzz_batch.c:protocol/fuzz/corpus/batch
fuzz_object:storage/fuzz/fuzz_object.c:storage/fuzz/corpus/object
fuzz_s3_xml:storage/fuzz/fuzz_s3_xml.c:storage/fuzz/corpus/s3_xml
fuzz_etcd_json:storage/fuzz/fuzz_etcd_json.c:storage/fuzz/corpus/etcd_json
"

status=0
for entry in $TARGETS; do
    IFS=: read -r t src seeds <<<"$entry"
    [ -f "$src" ] || continue
    bin=build-fuzz/$t
    [ -x "$bin" ] || { echo "fuzz: $bin missing" >&2; exit 1; }
    mkdir -p "$seeds"
    scratch=fuzz-scratch/$t
    rm -rf "$scratch" && mkdir -p "$scratch/corpus" "$scratch/crashes"
    cp "$seeds"/* "$scratch/corpus/" 2>/dev/null || true
    if [ "$t" = fuzz_request ]; then
        # Every captured request frame from a real client is a seed.
        for f in protocol/tests/golden/vectors/*-req*.bin; do
            [ -e "$f" ] && cp "$f" "$scratch/corpus/"
        done
    fi
    n=$(ls "$scratch/corpus" | wc -l)
    echo "fuzz: $t: replaying $n seeds"
    "$bin" -runs=0 "$scratch/corpus" >"$scratch/replay.log" 2>&1 || {
        tail -30 "$scratch/replay.log" >&2; echo "fuzz: $t: seed replay failed" >&2; exit 1; }
    echo "fuzz: $t: fuzzing for ${SECS} s"
    if ! "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -artifact_prefix="$scratch/crashes/" -print_final_stats=1 \
            "$scratch/corpus" >"$scratch/fuzz.log" 2>&1; then
        tail -40 "$scratch/fuzz.log" >&2
        for c in "$scratch"/crashes/*; do
            [ -e "$c" ] || continue
            cp "$c" "$seeds/" && echo "fuzz: $t: new seed $seeds/$(basename "$c")" >&2
        done
        status=1
    else
        grep -E 'stat::number_of_executed_units|stat::new_units_added' "$scratch/fuzz.log" |
            sed "s/^/fuzz: $t: /"
    fi
done
exit $status
