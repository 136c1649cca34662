# hearlib: `make figures` rebuilds every figure and table of the paper; `make test` runs the tests;
# `make lab` opens the notebooks in JupyterLab. Each creates/updates the local virtual environment
# (.venv) itself, with the extras in EXTRAS (JupyterLab included).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# On this kind of machine pip takes these from local disk; GPU users get CUDA builds the same way.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# the transformers release of the development environment (pyproject admits TRANSFORMERS_OLDEST to
# TRANSFORMERS_NEWEST; make test-versions checks both ends)
TRANSFORMERS_DEV ?= transformers==5.24.0
STAMP := $(VENV)/.hearlib-installed
EXTRAS ?= test,vision,lab
# extra arguments of `make lab`, e.g. LAB_ARGS="--no-browser --ip=0.0.0.0 --port=8888" on a remote machine
LAB_ARGS ?=

.PHONY: venv test test-fast test-versions test-browser lab benchmark clean-venv help
.DEFAULT_GOAL := help

help:
	@echo "make figures   rebuild every figure/table of the paper (PROFILE=quick|staged|paper|ci, MODEL=, DATA=)"
	@echo "make test      unit tests + notebooks through nbval"
	@echo "make test-fast the unit tests without the slow ones (the inner loop; tests/conftest.py says which)"
	@echo "make test-browser  every notebook run in JupyterLab in headless Chromium, then the make site report (after make collect)"
	@echo "make model     retrain the model organisms from a seed (= make model-fast)"
	@echo "make model-staged  hear-organism-r8 by the staged recipe (docs/ORGANISM.md; 78 min on 2 cores, resumable)"
	@echo "make model-tuned  hear-organism-r8-tuned: stage 5 on r8, instruction tuning with the tower unfrozen"
	@echo "make model-ingredients  the staged recipe minus one ingredient at a time (after model-staged)"
	@echo "make lab       JupyterLab on notebooks/ (LAB_ARGS=--no-browser on a machine without a browser)"
	@echo "make site      static HTML report of the executed notebooks (after make figures) into build/site/"
	@echo "make benchmark literal vs fast ablation speed on this machine"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC) $(TRANSFORMERS_DEV)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(STAMP)

# unit tests, then every notebook executed by nbval under the ci profile (see mk/figures.mk)
test: venv nbval-prepare
	$(PY) -m pytest -q -p no:cacheprovider tests $(NBVAL_ARGS)

# every notebook of hearlib.paper.catalogue.NOTEBOOKS run in JupyterLab in headless Chromium (Debian's chromium,
# driven by playwright), with its own defaults: the store is collected first (a no-op after make figures).
# Then render and make site (the notebooks executed on that store, as static HTML in build/site/), which
# tests/browser/test_site.py opens. Screenshots in build/browser/. BROWSER_ARGS="--browser-profile ci
# --browser-param data data/scenes/study-60 --browser-param store build/store-ci --browser-param out
# build/figures-ci": quick runs on a ci store (no render; the site test opens build/site/ if it exists).
BROWSER_ARGS ?=
test-browser: $(if $(BROWSER_ARGS),venv,collect)
	$(if $(BROWSER_ARGS),,$(MAKE) --no-print-directory render site)
	$(PY) -m pytest -q -s -p no:cacheprovider --browser tests/browser $(BROWSER_ARGS)

# the inner loop: the unit tests without the slow ones (end-to-end modules, and each per-family test on
# families other than LLaVA; tests/conftest.py marks them), no notebooks
test-fast: venv
	$(PY) -m pytest -q -x -p no:cacheprovider -m "not slow" tests

# every family end to end and the fast tests on the oldest and the newest transformers release hearlib supports,
# each in its own environment (.ci/versions; docs/MODELS.md, "Library versions"). The development environment
# (.venv) runs TRANSFORMERS_DEV (above), the release of docs/MODELS.md's table and the tiny models' recorded weights.
TRANSFORMERS_OLDEST ?= 5.20.2
TRANSFORMERS_NEWEST ?= 5.25.0
test-versions: venv
	.ci/versions $(TRANSFORMERS_OLDEST) $(TRANSFORMERS_NEWEST)

# the .py sources open as notebooks on double-click (jupytext's default viewer, set in the project's
# JupyterLab configuration jupyter/labconfig/); kernels run with this venv's python; root needs --allow-root
LAB_ENV := JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}"
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: venv
	$(LAB_ENV) $(PY) -m jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT) $(LAB_ARGS)

benchmark: venv
	$(PY) benchmarks/bench_ablation.py

clean-venv:
	rm -rf $(VENV)

-include mk/*.mk
