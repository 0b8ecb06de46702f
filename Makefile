# Entry points: `make demo` and `make test` set everything up on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv system lint typecheck bench bench-quick driver docs clean

$(PY): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: run 'sudo apt-get install python3-venv'"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(PY)

venv: $(PY)

system:
	./scripts/setup-system

demo: $(PY)
	$(PY) -m procobsrv demo

test: system $(PY)
	$(MAKE) -C driver
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(PY)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

typecheck: $(PY)
	$(PY) -m mypy

driver:
	$(MAKE) -C driver

clean:
	$(MAKE) -C driver clean
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
