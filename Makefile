# hearlib: `make figures` rebuilds every figure and table of the paper; `make test` runs the tests.
# Both create/update the local virtual environment (.venv) themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# On this kind of machine pip takes these from local disk; GPU users get CUDA builds the same way.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.hearlib-installed

.PHONY: venv test test-fast benchmark clean-venv help
.DEFAULT_GOAL := help

help:
	@echo "make figures   rebuild every figure/table of the paper (PROFILE=quick|paper|ci, MODEL=, DATA=)"
	@echo "make test      unit tests + notebooks through nbval"
	@echo "make model     retrain the model organisms from a seed"
	@echo "make benchmark literal vs fast ablation speed on this machine"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,vision]"
	touch $@

venv: $(STAMP)

# unit tests, then every notebook executed by nbval under the ci profile (see mk/figures.mk)
test: venv nbval-prepare
	$(PY) -m pytest -q -p no:cacheprovider tests $(NBVAL_ARGS)

test-fast: venv
	$(PY) -m pytest -q -x -p no:cacheprovider tests

benchmark: venv
	$(PY) benchmarks/bench_ablation.py

clean-venv:
	rm -rf $(VENV)

-include mk/*.mk
