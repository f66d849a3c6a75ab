# Set-up is part of every target: a fresh machine needs only python3 and make.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# nbgrader runs `alembic` found on PATH: the environment's bin goes first.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: main test starter release extension bench system-packages node

# Debian packages the tests need: bubblewrap (the grading sandbox) and chromium
# (browser tests). Installed when missing and we may (root); otherwise say so.
system-packages:
	@command -v bwrap >/dev/null && command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap chromium >/dev/null; \
	  else echo "install bubblewrap and chromium (Debian packages) for the sandbox and browser tests"; fi; }

# The students' JupyterLab extension too (non-editable: its committed, prebuilt assets).
EXTENSION := miniflow_starter/jupyterlab-miniflow
$(VENV)/.installed: pyproject.toml $(EXTENSION)/pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	$(PYTHON) -m pip install --quiet ./$(EXTENSION)
	touch $@

# PyTorch only adds a column to the benchmark: optional. This version is the
# local CPU wheel; another would pull gigabytes of CUDA packages.
$(VENV)/.torch: $(VENV)/.installed
	$(PYTHON) -m pip install --quiet torch==2.13.0 || echo "torch is optional: the benchmark skips it"
	touch $@

# The main job: regenerate the release, then grade the bundled sample
# submissions and print the grade table (outputs in out/).
main: $(VENV)/.installed system-packages
	$(PYTHON) -m autograder build-release
	$(PYTHON) -m autograder grade --samples --out out

test: $(VENV)/.installed system-packages node
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

starter: $(VENV)/.installed
	$(PYTHON) -m autograder build-starter

release: $(VENV)/.installed
	$(PYTHON) -m autograder build-release

# Node builds the extension's assets; Debian's nodejs where there is none (and we may: root).
node:
	@command -v node >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; \
	  else echo "install nodejs (Debian package) to rebuild the extension's assets"; fi; }

# Rebuild the extension's committed assets ($(EXTENSION)/jupyterlab_miniflow/labextension/) from
# its TypeScript, with JupyterLab's jlpm; tests/test_extension.py fails when they are stale.
extension: $(VENV)/.installed node
	cd $(EXTENSION) && $(abspath $(VENV))/bin/jlpm install --immutable && $(abspath $(VENV))/bin/jlpm build:prod
	$(PYTHON) -m pip install --quiet ./$(EXTENSION)

bench: $(VENV)/.torch
	$(PYTHON) benchmarks/mlp_epoch.py
