# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/flareship demo

# lint first: ruff and mypy must pass before the tests run (and so in CI, which runs `make test`)
test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff (lint, import order) and mypy, both configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/webhook_ingest.py
	$(BIN)/python bench/deploy_overhead.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache flareship.db*
