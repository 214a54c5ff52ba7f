# Promise: `make run` serves a real quote from a fresh clone; `make test` passes every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= data/optical.toml
SAMPLE := data/optical_orders.csv
REGISTRY ?= models/bundles
PORT ?= 8000
# What `make run` trained last, for these inputs (a hidden file: the registry skips it).
TRAINED = $(REGISTRY)/.make-run-trained
CODE := $(shell find models training -name '*.py' -not -path '*/__pycache__/*')

.PHONY: run test lint bench fuzz soak sample samples train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	# The kernels, compiled ahead of time for this CPU (models/kernels.py; ~20-40 s once).
	$(BIN)/python -c "import models.kernels"
	touch $(STAMP)

$(SAMPLE): $(STAMP)
	$(BIN)/promise sample-data --out data

sample: $(SAMPLE)

# Every drift scenario of the sample (base, shock, trend, peak; training/sample_data.py), each
# with its spec: data/optical.toml, data/optical_shock.toml, ... (~10 s).
samples: $(STAMP)
	$(BIN)/promise sample-data --out data --scenario all

# Train, promote and serve on http://127.0.0.1:$(PORT) (SQLite ledger, local registry). A busy
# port or a bad setting stops it before anything is trained or written; the sample model is
# trained and promoted once for the same sample data, spec and code ($(TRAINED)). Once it
# answers, a few sample open orders placed in the past ("Sample customer N", SAMPLE-N; once
# a day) are quoted through the API so the call list shows working.
run: $(STAMP)
	$(BIN)/promise serve --check --host 127.0.0.1 --port $(PORT)
	@$(MAKE) --no-print-directory $(TRAINED) REGISTRY=$(REGISTRY) SPEC=$(SPEC)
	PROMISE_REGISTRY=$(REGISTRY) $(BIN)/promise serve --host 127.0.0.1 --port $(PORT) --seed-sample

$(TRAINED): $(SAMPLE) $(SPEC) pyproject.toml $(CODE)
	$(BIN)/promise train --spec $(SPEC) --registry $(REGISTRY) --promote
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Promise against naive references on 1,000,000 generated orders, then training on 10,000,000
# (~20 min on 2 cores, ~11 GiB of memory): prints one table, writes bench/results.json (the 10M
# figures merged in by bench.scale). Loopback only; speeds are reported, never asserted.
bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.scale --sizes 10m --no-backtest

# Long schema fuzzing: 1,000 generated requests per API operation against the real app with a
# trained bundle; prints requests sent and 5xx seen per operation (~5 min on 2 cores).
fuzz: $(STAMP)
	$(BIN)/python -m tests.service.fuzz --examples 1000

# Long concurrency run: 2 workers, 32 clients, 10,000 quote requests (30 % retried with the same
# Idempotency-Key) on SQLite, and PostgreSQL when PROMISE_TEST_DATABASE_URL is set; prints
# requests sent, 5xx seen, quotes lost, quotes duplicated. Loopback only.
soak: $(STAMP)
	$(BIN)/python -m tests.service.soak --requests 10000

# PNGs of every staff page at 390 and 1280 px wide (headless Debian chromium: apt-get install
# chromium) in screenshots/, from the browser test that checks no page scrolls sideways.
.PHONY: screenshots
screenshots: $(STAMP)
	mkdir -p screenshots
	SCREENSHOTS_DIR=$(CURDIR)/screenshots $(BIN)/python -m pytest -q \
		tests/service/test_browser.py -k every_staff_page
	@ls screenshots/*.png

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
