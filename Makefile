# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Both set everything up first; set-up is idempotent and quick the second time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xesml-installed
# A project-local AiiDA configuration, so nothing touches ~/.aiida.
export AIIDA_PATH := $(CURDIR)/.aiida
# `verdi` (which the daemon is started with) and the console scripts come from the virtualenv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test setup install docs clean

demo: setup
	$(BIN)/aiida-xesml demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

setup: install
	$(BIN)/aiida-xesml setup

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

docs: install
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .aiida demo-output
