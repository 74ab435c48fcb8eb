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

# The JupyterLab extension is built by `pip install` (hatch-jupyter-builder runs npm).
LABEXT_SOURCES := labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
	$(wildcard labextension/src/* labextension/style/* labextension/style/icons/*)
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: demo test bench install lab clean

$(STAMP): pyproject.toml $(LABEXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Train headless as a job on the embedded store (the champion is promoted only if it is
# better), evaluate the champion on held-out data, then list the runs.
demo: $(STAMP)
	$(BIN)/mlops-nb run notebooks/train.ipynb --output $(DEMO_OUT)/train.ipynb
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

test: $(STAMP) $(CHROMIUM)
	MLOPS_NB_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/jobs.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache labextension/node_modules labextension/lib mlops_nb/labextension
