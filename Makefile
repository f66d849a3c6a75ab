# Set-up is part of every target: a fresh machine needs only python3 and make.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# nbgrader runs alembic from the environment's bin (DESIGN.md section 4).
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: main test lint starter bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	$(PYTHON) -m pip install --quiet torch==2.13.0 || echo 'torch is optional: skipping the PyTorch comparison'
	touch $@

# The main job (until the autograder lands: regenerate the starter and train the
# reference side by side with plain numpy on a small random set).
main: $(VENV)/.installed
	$(PYTHON) -m autograder build-starter
	$(PYTHON) benchmarks/mlp_epoch.py --samples 6400 --rounds 1

test: $(VENV)/.installed
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

starter: $(VENV)/.installed
	$(PYTHON) -m autograder build-starter

bench: $(VENV)/.installed
	$(PYTHON) benchmarks/mlp_epoch.py
