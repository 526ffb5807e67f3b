# Two commands matter: `make run` (the service on an embedded local broker, with sample
# webhooks) and `make test` (install everything, lint, all tests on a real broker).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: install broker-jars prometheus lint rules test unit integration run bench-pipeline fuzz clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

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

test: install broker-jars prometheus lint rules
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install broker-jars prometheus
	$(BIN)/pytest tests/integration

run: install broker-jars
	$(BIN)/loyalty-consumer local

# Pipeline cost per record and provider, without Kafka.
bench-pipeline: install
	$(BIN)/python -m tests.benchmarks.pipeline_cost

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
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .fuzz
