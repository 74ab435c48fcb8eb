# Set-up is two commands: `make demo` and `make test`. Both create .venv and install
# what they need; nothing has to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
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
	touch $(STAMP)

install: $(STAMP)

# The example pipeline (notebooks/pipeline.yaml) on the embedded store, twice: a training
# sweep, its best candidate registered as @challenger and evaluated, @champion moved only if
# it is better; the second run reuses every step ("cached"). Then evaluate the champion and
# list the runs.
demo: $(STAMP)
	$(BIN)/mlops-nb pipeline run notebooks/pipeline.yaml
	@echo; echo "== the same pipeline again: nothing changed, so every step is reused"
	$(BIN)/mlops-nb pipeline run notebooks/pipeline.yaml
	$(BIN)/mlops-nb run notebooks/evaluate.ipynb -p model=models:/tumour-classifier@champion \
		--output $(DEMO_OUT)/evaluate.ipynb
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
	MLOPS_NB_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -ra --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/jobs.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/store_load.py
	$(BIN)/python benchmarks/serve.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache labextension/node_modules labextension/lib mlops_nb/labextension
