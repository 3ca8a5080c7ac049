# Two entry points for a fresh machine (Python 3.11+): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench

$(BIN)/.lpie-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.lpie-installed

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: setup
	PATH="$(abspath $(BIN)):$$PATH" bash bench/all.sh
