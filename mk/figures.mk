# make figures: run the eight notebooks with papermill, in dependency order, and write figures/.
#   PROFILE=quick (default) | paper | ci     parameters from notebooks/profiles/$(PROFILE).yaml
#   MODEL=<folder|hub id|registry name>     run on a real checkpoint instead of the organisms
#   DATA=<COCO-format folder>               and on a real dataset (default: generated scenes)
#   DOMAIN_DATA=<DomainNet-layout folder>   for notebook 07 (default: DATA, scenes have domains/)
#   FIGURES=<folder>                        output folder (default figures/)
# Executed notebooks land in build/notebooks/$(PROFILE)/; the notebooks in git carry no outputs.
# Per-sample results are cached in data/store/study, so a rerun computes nothing twice.
PY ?= .venv/bin/python
PROFILE ?= quick
FIGURES ?= figures
NB_NAMES := 01_head_ablation 02_head_attribution 03_validation 04_tsne 05_text_tokens \
            06_image_tokens 07_domainnet 08_prompt_robustness
NB_BUILD := build/notebooks/$(PROFILE)
PROFILE_FILE := notebooks/profiles/$(PROFILE).yaml
ORGANISMS := $(foreach s,s m l,data/models/hear-organism-$(s))

# generated study scenes (held-out seed 1), sized per profile
SCENES_N_quick := 400
SCENES_N_paper := 2000
SCENES_N_ci := 60
STUDY_SCENES_N ?= $(or $(SCENES_N_$(PROFILE)),400)
STUDY_SCENES := data/scenes/study-$(STUDY_SCENES_N)

ifdef DATA
ifeq ($(wildcard $(DATA)),)
$(error DATA=$(DATA) does not exist: give a COCO-format folder (annotations/instances*.json + images) or a DomainNet-layout folder)
endif
STUDY_DATA := $(DATA)
DATA_DEP :=
else
STUDY_DATA := $(STUDY_SCENES)
DATA_DEP := $(STUDY_SCENES)/labels.json
endif

NB_PARAMS := -p data "$(STUDY_DATA)" -p out "$(FIGURES)"
ifdef MODEL
NB_PARAMS += -p model "$(MODEL)" -y '{models: ["$(MODEL)"]}'
MODEL_DEP :=
else
MODEL_DEP := $(addsuffix /config.json,$(ORGANISMS))
endif
ifdef DOMAIN_DATA
NB_PARAMS += -p domain_data "$(DOMAIN_DATA)"
endif
PAPERMILL_ARGS ?= --progress-bar

.PHONY: figures figures-readme notebooks-sync notebooks-ci nbval-prepare clean-figures

figures: $(addprefix $(NB_BUILD)/,$(addsuffix .ipynb,$(NB_NAMES)))
	$(PY) -m hearlib.report --out "$(FIGURES)"

figures-readme: venv
	$(PY) -m hearlib.report --out "$(FIGURES)"

data/scenes/study-%/labels.json: | venv
	$(PY) -m hearlib scenes --out data/scenes/study-$* --n $* --seed 1 --workers 2

data/models/hear-organism-%/config.json:
	@echo "missing organism $(@D): run 'make model' (or pass MODEL=<checkpoint>)" >&2; exit 1

# one rule per notebook; each depends on the previous one (dependency order) and on its source
define NOTEBOOK_RULE
$(NB_BUILD)/$(1).ipynb: notebooks/$(1).py $(PROFILE_FILE) $(DATA_DEP) $(MODEL_DEP) $(2) | venv
	@mkdir -p $(NB_BUILD)/src
	$(PY) -m jupytext --quiet --to ipynb notebooks/$(1).py -o $(NB_BUILD)/src/$(1).ipynb
	MPLBACKEND=Agg $(PY) -m papermill $(PAPERMILL_ARGS) -k python3 --cwd . -f $(PROFILE_FILE) $(NB_PARAMS) \
		$(NB_BUILD)/src/$(1).ipynb $(NB_BUILD)/$(1).running.ipynb
	mv $(NB_BUILD)/$(1).running.ipynb $$@
endef
$(eval $(call NOTEBOOK_RULE,01_head_ablation,))
$(eval $(call NOTEBOOK_RULE,02_head_attribution,$(NB_BUILD)/01_head_ablation.ipynb))
$(eval $(call NOTEBOOK_RULE,03_validation,$(NB_BUILD)/02_head_attribution.ipynb))
$(eval $(call NOTEBOOK_RULE,04_tsne,$(NB_BUILD)/03_validation.ipynb))
$(eval $(call NOTEBOOK_RULE,05_text_tokens,$(NB_BUILD)/04_tsne.ipynb))
$(eval $(call NOTEBOOK_RULE,06_image_tokens,$(NB_BUILD)/05_text_tokens.ipynb))
$(eval $(call NOTEBOOK_RULE,07_domainnet,$(NB_BUILD)/06_image_tokens.ipynb))
$(eval $(call NOTEBOOK_RULE,08_prompt_robustness,$(NB_BUILD)/07_domainnet.ipynb))

# refresh the committed .ipynb pairs from the py:percent sources (no outputs)
notebooks-sync: venv
	$(PY) -m jupytext --quiet --sync notebooks/*.py

# CI (`make test`): papermill only injects the ci profile's parameters (--prepare-only) into
# build/notebooks/nbval/; nbval then executes every cell (--nbval-lax: no cell may fail; outputs
# are not compared, the numbers of a 6-sample run are not meaningful). Fresh store, own figures.
NBVAL_DIR := build/notebooks/nbval
NBVAL_SCENES := data/scenes/study-$(SCENES_N_ci)
NBVAL_ARGS ?= --nbval-lax --nbval-current-env --nbval-cell-timeout=900 $(NBVAL_DIR)/*.ipynb

nbval-prepare: $(NBVAL_SCENES)/labels.json data/models/hear-organism-s/config.json | venv
	rm -rf $(NBVAL_DIR) build/store-ci build/figures-ci
	mkdir -p $(NBVAL_DIR)/src
	for nb in $(NB_NAMES); do \
	  $(PY) -m jupytext --quiet --to ipynb notebooks/$$nb.py -o $(NBVAL_DIR)/src/$$nb.ipynb && \
	  $(PY) -m papermill --prepare-only -k python3 -f notebooks/profiles/ci.yaml -p data $(NBVAL_SCENES) \
	    -p out build/figures-ci -p store build/store-ci $(NBVAL_DIR)/src/$$nb.ipynb $(NBVAL_DIR)/$$nb.ipynb \
	    --log-level ERROR || exit 1; \
	done
	rm -rf $(NBVAL_DIR)/src

# the same notebooks through papermill end to end (ci profile) into build/notebooks/ci/
notebooks-ci: venv
	$(MAKE) figures PROFILE=ci FIGURES=build/figures-ci

clean-figures:
	rm -rf build/notebooks $(FIGURES)/*.png $(FIGURES)/*.pdf $(FIGURES)/*.csv $(FIGURES)/*.md $(FIGURES)/.report
