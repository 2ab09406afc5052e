#!/usr/bin/env bash
# Everything `make test` runs, in order; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s\n' "$*"; }

step "source format (clang-format)"
make -s format-check

step "unit and compatibility tests (plain build)"
# The long variants (label long) are `make test-long`.
(cd build && ctest --output-on-failure -j "$JOBS" -LE long) | tee build/ctest.log
# A compatibility test skips (77) when its client is missing; in CI every
# client is installed by scripts/install-deps.sh, so a skip is a failure.
if [ "${CI:-}" = true ] && grep -q 'tests did not run' build/ctest.log; then
    echo "make test: tests were skipped in CI (a client is missing)" >&2
    exit 1
fi

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (clang)"
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNH_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest -L unit --output-on-failure -j "$JOBS")

step "fuzz targets: corpus replay and ${FUZZ_SECONDS:-30} s each"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz.sh

echo
echo "make test: all passed"
