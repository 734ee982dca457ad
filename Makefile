# Two commands on a fresh machine with only python3 and make: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint types unit clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tillit demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

types: $(STAMP)
	$(BIN)/mypy

test: lint types
	# Unit, integration and sandbox tests on both cores (each test file on one worker: the files share
	# module-scoped servers); the end-to-end tests after, alone, as they start real server processes.
	$(BIN)/pytest -n 2 --dist loadfile tests/unit tests/integration tests/sandbox
	$(BIN)/pytest tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/checkout.py --db both

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
