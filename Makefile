# Two commands do everything on a fresh machine:
#   make demo   # install into .venv, then run the embedded default job
#   make test   # install into .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pin matches the CPU wheel on this project's machines (a fast, small install); pip elsewhere picks its default
# build of that version. Override, e.g. TORCH_SPEC=torch, for another one.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/python examples/demo.py $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) build dist *.egg-info
