# Two commands matter: `make run` (the service on an embedded local broker, with sample
# webhooks) and `make test` (install everything, lint, all tests on a real broker).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed

.PHONY: install broker-jars lint test unit integration run clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

# Apache Kafka's jars from Maven into a cache outside the repository (reused later).
broker-jars: install
	$(BIN)/python -m consumer.local_broker fetch

lint: install
	$(BIN)/ruff check consumer tests
	$(BIN)/ruff format --check consumer tests

test: install broker-jars lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install broker-jars
	$(BIN)/pytest tests/integration

run: install broker-jars
	$(BIN)/loyalty-consumer local

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
