# Entry points: `make demo` and `make test` set everything up on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LINTED := src tests examples benchmarks scripts/render-diagrams scripts/mkdocs_hooks.py

.PHONY: demo test venv system lint typecheck bench fuzz driver bpf docs diagrams clean

$(PY): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: run 'sudo apt-get install python3-venv'"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,docs]'
	touch $(PY)

venv: $(PY)

system:
	./scripts/setup-system

demo: $(PY)
	$(PY) -m procobsrv demo

test: system $(PY)
	$(MAKE) -C driver
	$(MAKE) -C bpf
	$(MAKE) -C bpf check
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy
	$(PY) -m pytest
	$(MAKE) docs

lint: $(PY)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

typecheck: $(PY)
	$(PY) -m mypy

driver:
	$(MAKE) -C driver

# The eBPF program, rebuilt and installed as the shipped object (commit it).
bpf:
	$(MAKE) -C bpf install

# Full benchmark: every contender, medians of 3 runs, JSON + chart (docs/performance.md).
bench: system $(PY)
	$(PY) -m benchmarks.run

# The dedicated fuzz run (CI runs a smaller budget inside `make test`).
fuzz: $(PY)
	PROCOBSRV_FUZZ_EXAMPLES=100000 $(PY) -m pytest tests/reliability -k fuzz -p no:cacheprovider

# Diagrams in docs/ are rendered from their text sources.
diagrams: $(PY)
	$(PY) scripts/render-diagrams

# API reference from docstrings; warnings are errors.
docs: $(PY)
	$(PY) -m mkdocs build --strict --site-dir build/site

clean:
	$(MAKE) -C driver clean
	$(MAKE) -C bpf clean
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
