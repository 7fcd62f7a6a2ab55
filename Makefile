# The two commands of the README: `make train` and `make test`. Each bootstraps its own .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: train test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt setup.py
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

train: $(VENV)/.runtime
	$(BIN)/tabpipe train --config config/pipeline.yaml

test: $(VENV)/.dev
	bash scripts/test_deps.sh
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks app.py gunicorn.conf.py

# `make bench BENCH_ARGS="--only drift --repeats 3"`; see `python -m benchmarks --help`
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) artifacts model_registry
