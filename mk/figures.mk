# make figures = collect, then render.
#   collect: `hearlib run` fills the store with every record the notebooks read (NPROC=N: N processes
#            under `accelerate launch`; rerun = resume).
#   render:  the notebooks (hearlib/paper/catalogue.py lists them, in order; hearlib/paper/render.py runs them) executed with papermill; they
#            read the store and draw, load no model (HEARLIB_READ_ONLY), and write figures/.
# Options:
#   PROFILE=quick (default) | staged | paper | ci   sizes from notebooks/profiles/$(PROFILE).yaml
#                                           (staged: the whole study on hear-organism-r8-tuned)
#   MODEL=<folder|hub id|registry name>     the main model (default: the profile's organism)
#   MODELS="<m1> <m2> ..."                  models compared in Figs. 11-15, 17 and Table 2
#   DATA=<COCO-format folder>               default: generated scenes
#   DOMAIN_DATA=<DomainNet-layout folder>   for notebook 07 (default: DATA; scenes have domains/)
#   CORRECT_ONLY=0                          study every sample, answered correctly or not (dry runs)
#   NPROC=N                                 collect in N processes (GPUs, or CPU processes)
#   STORE=<folder>  FIGURES=<folder>        default data/store/study and figures/
#   COLLECT_STAGES=g1,g2  ONLY="nb1 nb2"    collect these plan groups only; render these notebooks only
PY ?= .venv/bin/python
# idle OpenMP threads sleep instead of spinning: on 2 shared cores spinning made torch's small ops
# 10-100x slower (docs/PERFORMANCE.md); `python -m hearlib` sets the same default itself (hearlib.cli.main);
# exported for every make target, the notebooks that papermill and JupyterLab run included
export OMP_WAIT_POLICY ?= PASSIVE
# seconds since $(1) (a `date +%s` value), for the phase totals make figures prints
elapsed = $$(( $$(date +%s) - $(1) ))
comma := ,
empty :=
space := $(empty) $(empty)
PROFILE ?= quick
# PROFILE=staged draws into figures/staged/ (its own study; figures/README.md stays the quick one's)
FIGURES_staged := figures/staged
FIGURES ?= $(or $(FIGURES_$(PROFILE)),figures)
STORE ?= data/store/study
NPROC ?= 1
NB_BUILD := build/notebooks/$(PROFILE)
PROFILE_FILE := notebooks/profiles/$(PROFILE).yaml
ORGANISMS := $(foreach s,s m l r8-tuned,data/models/hear-organism-$(s))

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

# the same choices for the collect command (RUN_ARGS) and the notebooks (NB_PARAMS)
RUN_ARGS := --profile $(PROFILE_FILE) --data "$(STUDY_DATA)" --out "$(STORE)"
NB_PARAMS := -p data "$(STUDY_DATA)" -p out "$(FIGURES)" -p store "$(STORE)"
MODEL_DEP := $(addsuffix /config.json,$(ORGANISMS))
ifdef MODELS
MODEL ?= $(firstword $(MODELS))
RUN_ARGS += --models $(MODELS)
NB_PARAMS += -p models '[$(subst $(space),$(comma) ,$(strip $(MODELS)))]' \
	-p organisms '[$(subst $(space),$(comma) ,$(strip $(MODELS)))]'
MODEL_DEP :=
endif
ifdef MODEL
RUN_ARGS += --model "$(MODEL)"
NB_PARAMS += -p model "$(MODEL)"
ifndef MODELS
RUN_ARGS += --models "$(MODEL)"
NB_PARAMS += -p models '["$(MODEL)"]' -p organisms '["$(MODEL)"]'
endif
MODEL_DEP :=
endif
ifdef DOMAIN_DATA
RUN_ARGS += --domain-data "$(DOMAIN_DATA)"
NB_PARAMS += -p domain_data "$(DOMAIN_DATA)"
endif
ifeq ($(CORRECT_ONLY),0)
RUN_ARGS += --include-wrong
NB_PARAMS += -p correct_only false
endif
ifeq ($(NPROC),1)
HEARLIB_RUN := $(PY) -m hearlib run
else
# --multi_gpu: N GPU processes, or N CPU processes where there is no GPU (accelerate's torchrun path)
HEARLIB_RUN := $(PY) -m accelerate.commands.launch --multi_gpu --num_processes $(NPROC) --num_machines 1 \
	--mixed_precision no --dynamo_backend no -m hearlib run
endif

.PHONY: figures figures-ingredients figures-readsite collect render site check-lab figures-readme notebooks-sync notebooks-ci nbval-prepare clean-figures

figures: $(DATA_DEP) $(MODEL_DEP) | venv
	@t0=$$(date +%s); $(MAKE) --no-print-directory collect || exit $$?; t1=$$(date +%s); \
	$(MAKE) --no-print-directory render || exit $$?; \
	echo "make figures: collect $$((t1 - t0)) s, render $(call elapsed,$$t1) s, total $(call elapsed,$$t0) s"

collect: $(DATA_DEP) $(MODEL_DEP) | venv
	@t0=$$(date +%s); $(HEARLIB_RUN) $(RUN_ARGS) $(if $(COLLECT_STAGES),--stages $(COLLECT_STAGES)) || exit $$?; \
	echo "make collect: $(call elapsed,$$t0) s"

# the ingredient study (issue 16, docs/ORGANISM.md): 10_organisms on the staged organism and its
# three ablations (make model-staged model-ingredients first), into figures/ingredients/ (not published)
figures-ingredients: $(DATA_DEP) | venv
	@t0=$$(date +%s); $(MAKE) --no-print-directory collect render PROFILE=ingredients \
	  FIGURES=figures/ingredients COLLECT_STAGES=organisms ONLY=10_organisms || exit $$?; \
	echo "make figures-ingredients: $(call elapsed,$$t0) s"

# READ_ONLY=0: let the notebooks compute what is missing (small profiles) instead of stopping
READ_ONLY ?= 1
# notebooks rendered at once (read-only: they only read the store; one per core)
RENDER_JOBS ?= 2
render: | venv
	@t0=$$(date +%s); \
	$(PY) -m hearlib.paper.render render --profile $(PROFILE_FILE) --build $(NB_BUILD) $(if $(filter 0,$(READ_ONLY)),--lazy,--jobs $(RENDER_JOBS)) $(if $(ONLY),--only $(ONLY)) $(NB_PARAMS) \
	  || exit $$?; \
	$(PY) -m hearlib.paper.report --out "$(FIGURES)" || exit $$?; \
	$(PY) -m hearlib.paper.report publish --out "$(FIGURES)" --profile $(PROFILE) $(PUBLISH_CHANGED) || exit $$?; \
	echo "make render: $(call elapsed,$$t0) s"

# make site: a static HTML report of the notebooks render executed into $(NB_BUILD) (the same PROFILE),
# with $(FIGURES)/RESULTS.md (else the published figures/README.md), into $(SITE)/; open
# $(SITE)/index.html from disk, nothing runs (hearlib.paper.site). Stops if render has not run.
SITE ?= build/site
site: | venv
	$(PY) -m hearlib.paper.site --notebooks "$(NB_BUILD)" --figures "$(FIGURES)" --out "$(SITE)"

# figures/README.md (committed) is rewritten only from the published configuration (hearlib.paper.report
# publish): quick profile, default models and generated data, FIGURES=figures; other runs write
# $(FIGURES)/RESULTS.md only
PUBLISH_CHANGED := $(foreach v,MODEL MODELS DATA DOMAIN_DATA,$(if $($(v)),--changed $(v))) \
	$(if $(filter 0,$(CORRECT_ONLY)),--changed CORRECT_ONLY)

# what JupyterLab users do after `make figures`: each notebook run with its own defaults from
# notebooks/; fails if one of them computes (writes) anything
check-lab: | venv
	$(PY) -m hearlib.paper.render check-defaults --store "$(STORE)"

figures-readme: venv
	$(PY) -m hearlib.paper.report --out "$(FIGURES)"

data/scenes/study-%/labels.json: | venv
	$(PY) -m hearlib scenes --out data/scenes/study-$* --n $* --seed 1 --workers 2

data/models/hear-organism-%/config.json:
	@echo "missing organism $(@D): run 'make model' (or pass MODEL=<checkpoint>)" >&2; exit 1

# refresh the committed .ipynb pairs from the py:percent sources (no outputs)
notebooks-sync: venv
	$(PY) -m jupytext --quiet --sync notebooks/*.py

# CI (`make test`): the ci profile's parameters injected (papermill prepare-only) into
# build/notebooks/nbval/; nbval then executes every cell (--nbval-lax: no cell may fail; outputs
# are not compared, the numbers of a 6-sample run are not meaningful). Fresh store, own figures;
# the notebooks compute their records lazily (the ci profile is small).
NBVAL_DIR := build/notebooks/nbval
NBVAL_SCENES := data/scenes/study-$(SCENES_N_ci)
NBVAL_ARGS ?= --nbval-lax --nbval-current-env --nbval-cell-timeout=900 $(NBVAL_DIR)/*.ipynb

nbval-prepare: $(NBVAL_SCENES)/labels.json data/models/hear-organism-s/config.json | venv
	rm -rf $(NBVAL_DIR) build/store-ci build/figures-ci
	$(PY) -m hearlib.paper.render prepare --profile notebooks/profiles/ci.yaml --build $(NBVAL_DIR) \
	  -p data $(NBVAL_SCENES) -p out build/figures-ci -p store build/store-ci
	rm -rf $(NBVAL_DIR)/src

# the same notebooks through papermill end to end (ci profile) into build/notebooks/ci/
notebooks-ci: venv
	$(MAKE) figures PROFILE=ci FIGURES=build/figures-ci STORE=build/store-ci

clean-figures:
	rm -rf build/notebooks $(FIGURES)/*.png $(FIGURES)/*.pdf $(FIGURES)/*.csv $(FIGURES)/*.md $(FIGURES)/.report

# issue 27 (docs/ORGANISM.md, "Where the read happens"): notebooks 10 and 11 on the organisms whose read
# site is in question, into figures/readsite/ (single-object scenes) and figures/readsite-marked/ (the
# marked scenes, for hear-organism-l-marked); not published. Train the designs first (make model-patches model-patches-tuned model-layer1
# model-marked); organisms not on disk are skipped and named.
MARKED_STUDY := data/scenes/marked-study-400
$(MARKED_STUDY)/labels.json: | venv
	$(PY) -m hearlib scenes --layout marked --out $(MARKED_STUDY) --n 400 --seed 1 --workers 2

figures-readsite: $(STUDY_SCENES)/labels.json $(MARKED_STUDY)/labels.json | venv
	@t0=$$(date +%s); \
	$(MAKE) --no-print-directory collect render PROFILE=readsite FIGURES=figures/readsite \
	  COLLECT_STAGES=organisms,readsite ONLY="10_organisms 11_where_the_read_happens" || exit $$?; \
	$(MAKE) --no-print-directory collect render PROFILE=readsite-marked FIGURES=figures/readsite-marked \
	  DATA=$(MARKED_STUDY) COLLECT_STAGES=organisms,readsite ONLY="10_organisms 11_where_the_read_happens" || exit $$?; \
	echo "make figures-readsite: $(call elapsed,$$t0) s"
