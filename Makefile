# Promise: `make run` serves a real quote from a fresh clone; `make test` passes every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= data/optical.toml
SAMPLE := data/optical_orders.csv
REGISTRY ?= models/bundles

.PHONY: run test lint bench fuzz soak sample train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(SAMPLE): $(STAMP)
	$(BIN)/promise sample-data --out data

sample: $(SAMPLE)

# Train, promote and serve on http://127.0.0.1:8000 (SQLite ledger, local registry).
run: $(SAMPLE)
	$(BIN)/promise train --spec $(SPEC) --registry $(REGISTRY) --promote
	PROMISE_REGISTRY=$(REGISTRY) $(BIN)/promise serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
