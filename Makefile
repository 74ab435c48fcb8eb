# Set-up is two commands: `make demo` and `make test`. Both create .venv and install
# what they need; nothing has to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Evidently in a venv of its own (pyproject.toml: the evidently extra says why): the
# tests and `make bench` compare our drift statistics with its own on the same data.
EVIDENTLY := $(VENV)/evidently/bin/python
DEMO_OUT := .mlops/demo
# Browser tests use Debian's Chromium (Playwright cannot download browsers here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The shared-store tests start a private PostgreSQL cluster from Debian's server binaries
# (any version; the path below only names the file to make when none is installed).
PG_INITDB ?= $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb)),/usr/lib/postgresql/bin/initdb)

# The JupyterLab extension is built by `pip install` (hatch-jupyter-builder runs npm).
LABEXT_SOURCES := labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
	$(shell find labextension/src labextension/style -type f)
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: demo test check bench install lab clean

$(STAMP): pyproject.toml $(LABEXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	test -x $(EVIDENTLY) || $(PYTHON) -m venv $(VENV)/evidently
	$(VENV)/evidently/bin/pip install --quiet 'evidently>=0.7,<0.8' 'pandas<3'
	touch $(STAMP)

install: $(STAMP)

# The whole loop on the embedded store (README: "The loop, in one command"):
# 1. the example pipeline (notebooks/pipeline.yaml): a training sweep, its best candidate
#    registered as @challenger with its training data as the reference profile, evaluated,
#    and made @champion; run again, every step is reused ("cached");
# 2. @champion served (the server follows the alias) and sent a day of ordinary traffic,
#    with the true diagnoses fed back: the monitor says healthy;
# 3. champion is protected (moves wait for a person); the lab's instrument is recalibrated
#    and traffic drifts; the scheduled monitor finds it and starts notebooks/retrain.yaml,
#    whose guarded promotion waits for approval; the demo approves it as a person would;
# 4. the server swaps to the new version, and the monitor is healthy again.
DEMO_MODEL := models:/tumour-classifier@champion
demo: $(STAMP)
	$(BIN)/mlops-nb pipeline run notebooks/pipeline.yaml
	@echo; echo "== the same pipeline again: nothing changed, so every step is reused"
	$(BIN)/mlops-nb pipeline run notebooks/pipeline.yaml
	@set -e; mkdir -p $(DEMO_OUT); \
	port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	url=http://127.0.0.1:$$port; \
	echo; echo "== serve $(DEMO_MODEL) on $$url (it follows the alias)"; \
	$(BIN)/mlops-nb serve $(DEMO_MODEL) --port $$port --poll 1 > $(DEMO_OUT)/server.log 2>&1 & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT; \
	for i in $$(seq 120); do curl -sf $$url/ready >/dev/null && break; sleep 0.5; done; \
	echo; echo "== a day of ordinary traffic, with the true diagnoses fed back"; \
	$(BIN)/mlops-nb run notebooks/traffic.ipynb -p server=$$url -p seed=1 --output $(DEMO_OUT)/traffic-1.ipynb; \
	$(BIN)/mlops-nb monitor $(DEMO_MODEL) --since 1h; \
	echo; echo "== @champion now waits for a person; the instrument is recalibrated: traffic drifts"; \
	$(BIN)/mlops-nb protect tumour-classifier champion; \
	$(BIN)/mlops-nb run notebooks/traffic.ipynb -p server=$$url -p seed=2 -p recalibrated=True --output $(DEMO_OUT)/traffic-2.ipynb; \
	echo; echo "== the scheduled monitor finds the drift and starts the retraining pipeline"; \
	$(BIN)/mlops-nb schedule remove watch >/dev/null 2>&1 || true; \
	$(BIN)/mlops-nb schedule add watch --cron "*/30 * * * *" --monitor $(DEMO_MODEL) --since 10m \
		--on-drift notebooks/retrain.yaml; \
	$(BIN)/mlops-nb schedule run-now watch || true; \
	echo; echo "== the promotion waits for approval, with its evidence; a person approves it"; \
	$(BIN)/mlops-nb approvals tumour-classifier; \
	version=$$($(BIN)/mlops-nb approvals tumour-classifier --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)[0]["version"])'); \
	$(BIN)/mlops-nb approve tumour-classifier $$version --alias champion \
		--reason "retrained on the recalibrated instrument's cases; better on the same held-out cases"; \
	for i in $$(seq 60); do curl -s $$url/ready | grep -q "\"version\": \"$$version\"" && break; sleep 0.5; done; \
	echo; echo "== the server swapped to v$$version; more recalibrated traffic, and the monitor again"; \
	$(BIN)/mlops-nb run notebooks/traffic.ipynb -p server=$$url -p seed=3 -p recalibrated=True --output $(DEMO_OUT)/traffic-3.ipynb; \
	$(BIN)/mlops-nb monitor $(DEMO_MODEL) --since 10m
	$(BIN)/mlops-nb runs -n 10

# Not a set-up command: JupyterLab on the example notebooks, with the demo's store
# (the registry panel is the cube icon in the left sidebar).
lab: $(STAMP)
	test -f .mlops/mlflow.db || $(MAKE) demo
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

$(PG_INITDB):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null

# The checks that keep the code's shape (README: Development), first because they take a
# minute: ruff (lint and format), mypy on mlops_nb/, the import-linter layers in
# pyproject.toml, and ESLint, Prettier and the Jest unit tests of the JupyterLab extension
# (its node_modules come from the pip install, which runs npm install).
check: $(STAMP)
	$(BIN)/ruff check mlops_nb tests benchmarks
	$(BIN)/ruff format --check mlops_nb tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd labextension && npm run lint && npm test

test: $(STAMP) $(CHROMIUM) $(PG_INITDB) check
	MLOPS_NB_CHROMIUM=$(CHROMIUM) MLOPS_NB_EVIDENTLY_PYTHON=$(EVIDENTLY) $(BIN)/python -m pytest -q -ra --durations=25 -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/jobs.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/store_load.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/monitor.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache labextension/node_modules labextension/lib mlops_nb/labextension
