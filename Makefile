# The two quick-start commands (`make demo`, `make test`) make their own virtualenv, because a
# fresh Debian refuses `pip install` outside one. Each step says what it does: the install takes
# about 30 s, and pip shows each package it fetches (no progress bars, which garble logs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo up test test-postgres lint typecheck screenshots bench bench-smoke bench-lanes bench-publish bench-outbox bench-kafka bench-filters bench-pull clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Interlink needs Python 3.11 or newer")'
	@echo "==> making a virtualenv in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian, 'apt-get install python3-venv' first"; exit 1; }
	@echo "==> upgrading pip in $(VENV)"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> installing Interlink and its dev tools into $(VENV) (about 30 s the first time)"
	@$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	@echo "==> installing the Python SDK (sdk/python, with its outbox extra) into $(VENV)"
	@$(BIN)/python -m pip install --progress-bar off -e 'sdk/python[outbox]'
	@touch $(STAMP)
	@echo "==> ready: $(BIN)/interlink"

$(BENCH_STAMP): pyproject.toml $(STAMP)
	@echo "==> installing the benchmark's extra packages"
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

demo: $(STAMP)  ## run Interlink on SQLite with a live demo (Ctrl-C stops it)
	$(BIN)/interlink up --demo

up: $(STAMP)
	$(BIN)/interlink up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench sdk/python
	$(BIN)/ruff format --check src tests bench sdk/python

typecheck: $(STAMP)
	$(BIN)/mypy

# Test files run in parallel (pytest-xdist), one file per worker at a time, so module fixtures
# stay shared; PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

# Tests marked exclusive stop a service the others share (PostgreSQL, Kafka): they run alone, after.
test: lint typecheck  ## the whole test suite: lint, types, unit, integration, e2e
	$(PYTEST) -m "not exclusive"
	$(PYTEST) -n 0 -m exclusive

# The in-process integration suite again, every test on a fresh PostgreSQL database instead of
# SQLite (needs INTERLINK_TEST_POSTGRES_URL: `bash scripts/postgres.sh install start setup`).
test-postgres: $(STAMP)
	INTERLINK_TEST_BACKEND=postgres $(PYTEST) -m "not exclusive" tests/integration
	INTERLINK_TEST_BACKEND=postgres $(PYTEST) -n 0 -m exclusive tests/integration

# The benchmark (docs/benchmarks.md): Interlink against a FastAPI + Celery + Redis baseline on
# loopback, both measured in the same run; installs Debian's redis-server if it is missing.
screenshots: $(STAMP)  ## retake docs/console/'s screenshots with the browser test (needs Chromium)
	INTERLINK_UPDATE_SCREENSHOTS=1 $(PYTEST) -n 0 tests/e2e/test_console.py

bench: $(BENCH_STAMP)  ## the full benchmark (about 10 minutes): prints the table
	$(BIN)/python -m bench.run

bench-smoke: $(BENCH_STAMP)  ## a few seconds of load on each system; fails on a lost event
	$(BIN)/python -m bench.run --smoke

bench-lanes: $(BENCH_STAMP)  ## delivery-lane ratios (about 4 minutes); fails when a target is missed
	$(BIN)/python -m bench.lanes

bench-publish: $(BENCH_STAMP)  ## publish API events/s against Celery task publish (about a minute)
	$(BIN)/python -m bench.publish

bench-filters: $(STAMP)  ## routing with 20 filtered subscriptions against 20 plain (about a minute)
	$(BIN)/python -m bench.filters

bench-outbox: $(BENCH_STAMP)  ## outbox relay events/s against a Celery relay (under a minute)
	$(BIN)/python -m bench.outbox

bench-kafka: $(BENCH_STAMP)  ## Kafka endpoint deliveries/s against HTTP (a few minutes; needs scripts/kafka.sh)
	bash scripts/kafka.sh install start
	INTERLINK_TEST_KAFKA_BOOTSTRAP=$$(bash scripts/kafka.sh bootstrap) $(BIN)/python -m bench.kafka

bench-pull: $(BENCH_STAMP)  ## pull consumers events/s against a Celery worker (about 3 minutes)
	$(BIN)/python -m bench.pull

clean:
	rm -rf $(VENV) .interlink .mypy_cache .ruff_cache .pytest_cache
