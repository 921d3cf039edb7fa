# The two quick-start commands (`make demo`, `make test`) make their own virtualenv, because a
# fresh Debian refuses `pip install` outside one.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo up test lint typecheck clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Interlink needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian, 'apt-get install python3-venv' first"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## run Interlink on SQLite with a live demo (Ctrl-C stops it)
	$(BIN)/interlink up --demo

up: $(STAMP)
	$(BIN)/interlink up

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck  ## the whole test suite: lint, types, unit, integration, e2e
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .interlink .mypy_cache .ruff_cache .pytest_cache
