# rnnpipe: `make run` installs and runs the default pipeline; `make test` installs and tests.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
CONFIG ?= configs/names_gender_lstm.yaml

.PHONY: run test install install-test lint bench ui clean

run: install
	$(VENV)/bin/rnnpipe run $(CONFIG)

test: install-test
	$(PY) -m pytest -q -n 2 --dist worksteal

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

lint: install-test
	$(VENV)/bin/ruff check pipeline components models tests bench

bench: install
	$(PY) -m bench.run_all

ui: install
	$(VENV)/bin/rnnpipe ui

clean:
	rm -rf runs exports
