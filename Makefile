# Entry points: `make demo` and `make test` set everything up on a fresh Debian machine.
# `make demo` installs the package with its runtime needs only; the test, dev and docs
# extras come with `make venv` / `make test` (a stamp file in the same .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEV_EXTRAS := $(VENV)/.dev-extras
LINTED := src tests examples benchmarks scripts/render-diagrams scripts/mkdocs_hooks.py scripts/cli_files.py setup.py

.PHONY: demo test venv system lint typecheck bench fuzz driver bpf docs diagrams clean

$(PY): setup.cfg setup.py pyproject.toml
	./scripts/setup-system demo
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(PY)

$(DEV_EXTRAS): $(PY)
	$(PY) -m pip install -q -e '.[test,dev,docs,nats]'
	touch $@

venv: $(DEV_EXTRAS)

system:
	./scripts/setup-system

demo: $(PY)
	$(PY) -m procobsrv demo

test: system $(DEV_EXTRAS)
	$(MAKE) -C driver
	$(MAKE) -C bpf
	$(MAKE) -C bpf check
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy
	$(PY) -m pytest
	$(MAKE) docs

lint: $(DEV_EXTRAS)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

typecheck: $(DEV_EXTRAS)
	$(PY) -m mypy

# Rebuilds ProcObsrv.sys and refreshes the committed copy the wheel ships (+ its sha256).
driver:
	$(MAKE) -C driver package

# The eBPF program, rebuilt and installed as the shipped object (commit it).
bpf:
	$(MAKE) -C bpf install

# Full benchmark: every contender, medians of 3 runs, JSON + chart (docs/performance.md).
bench: system $(DEV_EXTRAS)
	$(PY) -m benchmarks.run

# The dedicated fuzz run (CI runs a smaller budget inside `make test`).
fuzz: $(DEV_EXTRAS)
	PROCOBSRV_FUZZ_EXAMPLES=100000 $(PY) -m pytest tests/linux/test_connector_decoder_fuzz.py tests/windows/test_device_fuzz.py -p no:cacheprovider

# Diagrams in docs/ are rendered from their text sources.
diagrams: $(DEV_EXTRAS)
	$(PY) scripts/render-diagrams

# The docs site (Material for MkDocs, the `docs` extra): CLI and API reference generated at
# build time; warnings are errors.
docs: $(DEV_EXTRAS)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

clean:
	$(MAKE) -C driver clean
	$(MAKE) -C bpf clean
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
