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

# A local keypair for signing models (git-ignored, never committed), created on first use; in
# production the private key lives only on the trainer (docs/deploy.md).
KEYS := .tabpipe/keys

$(KEYS)/registry-signing.pem: | $(VENV)/.runtime
	$(BIN)/tabpipe keys generate --dir $(KEYS)

train: $(VENV)/.runtime $(KEYS)/registry-signing.pem
	$(BIN)/tabpipe train --config config/pipeline.yaml

test: $(VENV)/.dev
	bash scripts/test_deps.sh
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks app.py gunicorn.conf.py

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/serve_bench.py

clean:
	rm -rf $(VENV) artifacts model_registry
