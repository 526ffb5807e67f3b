# Two commands matter: `make run` (the service on an embedded local broker, with sample
# webhooks) and `make test` (install everything, lint, all tests on a real broker).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever the lock changes.
INSTALLED := $(VENV)/.installed
# The image's base: `local`, one made here from Debian's packages (no container registry
# needed, so `make test` builds anywhere), or `official`, the Dockerfile's Python image
# pinned by digest. The image's tag and labels say which.
IMAGE_BASE ?= local
export LOYALTY_IMAGE_BASE := $(IMAGE_BASE)
# The benchmark's own virtualenv: its Quix Streams contender pins another confluent-kafka.
BENCH_VENV := .venv-bench
BENCH_INSTALLED := $(BENCH_VENV)/.installed
# e.g. make bench BENCH_ARGS='--records 150000 --rounds 5'
BENCH_ARGS ?=

.PHONY: install broker-jars prometheus lint rules docs check test unit integration run bench bench-pipeline bench-bomb chaos fuzz clean
.PHONY: deploy-tools image lock lock-upgrade

# Every dependency from the hashed lock, then the package itself (no dependencies of
# its own left to resolve; setuptools comes from the lock too).
$(INSTALLED): requirements/test.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/test.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(INSTALLED)

# The lock files, after a change of pyproject.toml (requirements/README.md):
# resolved for every platform and Python the package supports, with hashes.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11
lock: install
	$(UV_COMPILE) $(UV_ARGS) pyproject.toml -o requirements/runtime.lock
	$(UV_COMPILE) $(UV_ARGS) requirements/build.in -o requirements/build.lock
	$(UV_COMPILE) $(UV_ARGS) pyproject.toml requirements/build.in --extra test --extra docs -o requirements/test.lock

lock-upgrade:
	$(MAKE) lock UV_ARGS=--upgrade

# Apache Kafka's jars from Maven into a cache outside the repository (reused later).
broker-jars: install
	$(BIN)/python -m consumer.dev.local_broker fetch

# Prometheus and promtool (Debian's package) for the rule checks and the scrape test.
prometheus:
	bash deploy/prometheus/ensure-prometheus.sh

# promtool check config / check rules / test rules, and the dashboard parses.
rules: prometheus
	bash deploy/prometheus/check.sh

lint: install
	$(BIN)/ruff check consumer tests
	$(BIN)/ruff format --check consumer tests
	$(BIN)/ruff check deploy
	$(BIN)/ruff format --check deploy

# The documentation site: the generated pages must be fresh, and MkDocs builds in strict
# mode (a broken link, a missing anchor or a page outside the navigation fails). Not
# --quiet: it silences the warnings that strict mode counts, and the build then passes.
docs: install
	$(BIN)/python -m consumer.dev.generated_docs --check
	$(BIN)/mkdocs build --strict

# The inner loop while changing code: lint, docs, unit tests (no broker) with a tenth of
# the generated examples (tests/helpers/properties.py). It leaves out the one test that
# reruns part of the suite in a copy of the tree; `make unit` and `make test` run it, and
# every example.
check: lint docs
	HYPOTHESIS_PROFILE=check $(BIN)/pytest tests/unit -q -m 'not suite_in_a_copy'

test: install broker-jars prometheus lint rules docs deploy-tools image
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install broker-jars prometheus deploy-tools image
	$(BIN)/pytest tests/integration

# `make run ARGS=--exit-when-done` (or --verbose, --no-samples): options of `local`.
run: install broker-jars
	$(BIN)/loyalty-consumer local $(ARGS)

$(BENCH_INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench]'
	touch $@

# Side-by-side throughput on one local broker; how to read it: docs/performance.md.
bench: $(BENCH_INSTALLED) broker-jars
	$(BENCH_VENV)/bin/python -m tests.benchmarks.end_to_end $(BENCH_ARGS)

# Pipeline cost per record and provider, without Kafka.
bench-pipeline: install
	$(BIN)/python -m tests.benchmarks.pipeline_cost

# Peak resident memory of the service with and without a gzip compression bomb.
bench-bomb: install broker-jars
	$(BIN)/python -m tests.benchmarks.compression_bomb

# The fault scenarios of tests/integration/test_fault_tolerance.py at any size, both
# guarantees, printing the ledger and the longest stall per partition of each scenario:
# make chaos RECORDS=100000 FAULTS=3 SEED=7 OUTAGE=60; CHAOS_ARGS='--scenario outage
# --guarantee exactly-once' runs a part (scenarios: kill, rebalance, restarts, outage);
# GROUP_PROTOCOL=consumer runs the members on KIP-848's group protocol.
RECORDS ?= 20000
FAULTS  ?= 3
SEED    ?= 7
OUTAGE  ?= 60
GROUP_PROTOCOL ?= classic
CHAOS_ARGS ?=
chaos: install broker-jars
	$(BIN)/python -m tests.integration.chaos --records $(RECORDS) --faults $(FAULTS) \
		--seed $(SEED) --outage-seconds $(OUTAGE) --group-protocol $(GROUP_PROTOCOL) $(CHAOS_ARGS)

# Deployment: helm, kubeconform, kube-apiserver (built from its Go module), etcd,
# docker-compose, KEDA's CRDs and offline schemas; and the service's container image,
# built daemonless with buildah. Both cached under ~/.cache/loyalty-consumer/.
deploy-tools: install
	PYTHON=$(BIN)/python bash deploy/kubernetes/ensure-tools.sh >/dev/null

image: install
	PYTHON=$(BIN)/python bash deploy/container/build-image.sh --base $(IMAGE_BASE)

# Coverage-guided fuzzing of Pipeline.process (atheris) for FUZZ_SECONDS. The corpus
# in .fuzz/corpus/ grows across runs; crashing inputs are written to .fuzz/artifacts/.
FUZZ_SECONDS ?= 300
FUZZ_INSTALLED := $(VENV)/.fuzz-installed

$(FUZZ_INSTALLED): $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[test,fuzz]'
	touch $@

fuzz: $(FUZZ_INSTALLED)
	mkdir -p .fuzz/corpus .fuzz/artifacts
	$(BIN)/python -m tests.fuzz.pipeline_fuzz -max_total_time=$(FUZZ_SECONDS) \
		-max_len=65536 -artifact_prefix=.fuzz/artifacts/ .fuzz/corpus

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .ruff_cache .hypothesis .fuzz .site
