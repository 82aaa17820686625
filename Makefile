# Two commands on a fresh machine: `make bench` (the latency table) and
# `make test`. Each creates or reuses .venv and installs loopfast into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.loopfast-installed
SOURCES := pyproject.toml $(wildcard setup.py) $(wildcard src/loopfast/*.c)

.PHONY: test bench stress lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(PY) -m pytest -m "not stress" -q

stress: $(STAMP)
	$(PY) -m pytest -m stress -q

bench: $(STAMP)
	$(VENV)/bin/loopfast bench

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
