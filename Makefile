# Thin wrapper over CMake.  `make run` and `make test` install what is missing first.
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build test test-long test-compat-full unit fuzz run bench clean format-check regen

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Unit tests, the sanitized build of them, golden vectors and short fuzz runs.
test: build
	@bash scripts/test.sh

# The long variants of the compatibility tests (CTest label long).
test-long: build
	@cd $(BUILD) && ctest -L long --output-on-failure

# Every test of librdkafka's own regression suite that runs against the
# gateway (compat-tests/librdkafka/tests.list; `make test` runs the quick ones).
test-compat-full: build
	@NUTHATCH=$(CURDIR)/$(BUILD)/nuthatch /usr/bin/python3 compat-tests/librdkafka/run.py --set full $(ARGS)

# Unit tests of the plain build only.
unit: build
	@cd $(BUILD) && ctest -L unit --output-on-failure

# Each fuzz target for FUZZ_SECONDS (default 10 minutes).
fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-600} bash scripts/fuzz.sh

run: build
	@if [ ! -x $(BUILD)/nuthatch ]; then \
	    echo "make run: $(BUILD)/nuthatch is not part of this tree yet" >&2; exit 1; fi
	@exec $(BUILD)/nuthatch $(ARGS)

# The side-by-side benchmark (bench/run.sh): mock cluster, embedded, S3 + etcd, raw limits;
# writes its results into docs/performance.md.  Sizes: NH_BENCH_* (see bench/run.sh).
bench: build
	@bash bench/run.sh --docs

# Regenerate the protocol codec from ../shared/kafka-messages.
regen:
	@python3 protocol/gen/generate.py ../shared/kafka-messages protocol/gen

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h' | grep -v '^protocol/gen/')

clean:
	rm -rf $(BUILD) build-asan build-release build-fuzz fuzz-scratch
