# Two commands matter: `make run` (the service on an embedded local broker, with sample
# webhooks) and `make test` (install everything, lint, all tests on a real broker).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: install broker-jars prometheus lint rules test unit integration run bench-pipeline clean

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

# `make run ARGS=--exit-when-done` (or --verbose, --no-samples): options of `local`.
run: install broker-jars
	$(BIN)/loyalty-consumer local $(ARGS)

# Pipeline cost per record and provider, without Kafka.
bench-pipeline: install
	$(BIN)/python -m tests.benchmarks.pipeline_cost

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
