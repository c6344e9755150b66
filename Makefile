# ledgermq top-level Makefile. `make run` and `make test` work on a fresh
# Debian 12 machine as root: both install what is missing first.
JOBS        ?= 2
BUILD       ?= build
ASAN_BUILD  ?= build-asan
FUZZ_BUILD  ?= build-fuzz
PY          := /usr/bin/python3
FUZZ_SECONDS ?= 15
RUN_ARGS    ?=

.PHONY: all deps build run test unit asan integration fuzz-smoke fuzz bench soak demo clean format

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# One broker node with embedded defaults: 127.0.0.1:1883, data in ./data.
# Extra daemon options: make run RUN_ARGS="-p 1884 -v".
run: build
	./$(BUILD)/ledgermqd $(RUN_ARGS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLEDGERMQ_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

integration: build
	LMQ_BUILD_DIR=$(abspath $(BUILD)) timeout 1800 $(PY) -m pytest -q -p no:cacheprovider tests/integration

fuzz-build: deps
	@CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLEDGERMQ_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)

# Bounded fuzz run of every target on its seed corpus (part of `make test`).
fuzz-smoke: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Longer fuzz run: `make fuzz FUZZ_SECONDS=600`.
fuzz: FUZZ_SECONDS=300
fuzz: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The cluster fault tests (3 daemons on loopback: kill -9 of the leader
# under load, kill -9 + restart of a follower; partitions in network
# namespaces, needs root, with a 30 s cut that make test leaves out) in a
# loop for SOAK_SECONDS.
SOAK_SECONDS ?= 600
soak: build
	@end=$$(( $$(date +%s) + $(SOAK_SECONDS) )); n=0; \
	while [ $$(date +%s) -lt $$end ]; do n=$$((n+1)); echo "soak round $$n"; \
	  LMQ_BUILD_DIR=$(abspath $(BUILD)) timeout 600 $(PY) -m pytest -q -x -p no:cacheprovider \
	    tests/integration/test_cluster.py -k "kill9 or replicate" || exit 1; \
	  LMQ_SOAK=1 LMQ_BUILD_DIR=$(abspath $(BUILD)) timeout 600 $(PY) -m pytest -q -x \
	    -p no:cacheprovider tests/integration/test_cluster_partition.py || exit 1; \
	  LMQ_SOAK=1 LMQ_BUILD_DIR=$(abspath $(BUILD)) timeout 600 $(PY) -m pytest -q -x -s \
	    -p no:cacheprovider tests/integration/test_ledgered.py -k "burst_many or kill9" \
	    || exit 1; done; \
	echo "make soak: $$n rounds passed"

test: unit asan integration fuzz-smoke
	@echo "make test: all suites passed"

bench: build
	@bash bench/run.sh $(abspath $(BUILD))

# One node, 20 registered smart meters streaming signed readings for 10 s,
# every receipt verified offline, the log audited (scripts/demo.sh;
# DEMO_METERS / DEMO_SECONDS to change the size).
demo: build
	@bash scripts/demo.sh $(abspath $(BUILD))

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
