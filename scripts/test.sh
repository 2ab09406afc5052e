#!/usr/bin/env bash
# Everything `make test` runs, in order; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s\n' "$*"; }

step "source format (clang-format)"
make -s format-check

# Each suite's wall-clock time, printed at the end.
TIMES=()
T0=$SECONDS
timed() { TIMES+=("$(printf '%-12s %5d s' "$1" $((SECONDS - T0)))"); T0=$SECONDS; }
print_times() {
    [ ${#TIMES[@]} -gt 0 ] || return 0
    echo
    echo "durations:"
    printf '  %s\n' "${TIMES[@]}"
}
trap print_times EXIT

# A compatibility test skips (77) when its client is missing; in CI every
# client is installed by scripts/install-deps.sh, so a skip is a failure.
no_skips() {
    if [ "${CI:-}" = true ] && grep -q 'tests did not run' "$1"; then
        echo "make test: tests were skipped in CI (a client is missing)" >&2
        exit 1
    fi
}

step "unit tests (plain build)"
T0=$SECONDS
(cd build && ctest -L unit --output-on-failure -j "$JOBS") | tee build/ctest-unit.log
timed unit

step "compatibility tests (real clients, embedded and S3 + etcd)"
(cd build && ctest -L compat -LE librdkafka --output-on-failure -j "$JOBS") | tee build/ctest-compat.log
no_skips build/ctest-compat.log
timed compat

step "librdkafka's regression suite, quick set (make test-compat-full: all of it)"
(cd build && ctest -L librdkafka --output-on-failure) | tee build/ctest-librdkafka.log
no_skips build/ctest-librdkafka.log
timed librdkafka

step "optimized build (Release: -O3, whose analyses warn where -O2 does not)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j "$JOBS" >/dev/null
timed release

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (clang)"
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNH_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest -L unit --output-on-failure -j "$JOBS")
timed asan

step "fuzz targets: corpus replay and ${FUZZ_SECONDS:-30} s each"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz.sh
timed fuzz

print_times
trap - EXIT
echo
echo "make test: all passed"
