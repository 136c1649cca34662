# make model: regenerate the scenes and retrain every organism size from a seed
# (hearlib.train; shared CLIP tower, then one decoder per size). Prints a tqdm bar and the
# held-out accuracy per question type and per style; saves data/models/hear-organism-{s,m,l}/.
PY ?= .venv/bin/python
MODEL_SEED ?= 0
MODEL_TRAIN_SCENES ?= 8000
MODEL_HELDOUT_SCENES ?= 300
MODEL_TRAIN_ARGS ?=
SCENES_DIR ?= data/scenes

.PHONY: model scenes

scenes:
	rm -rf $(SCENES_DIR)/train $(SCENES_DIR)/heldout
	$(PY) -m hearlib scenes --out $(SCENES_DIR)/train --n $(MODEL_TRAIN_SCENES) --seed 0 --workers 2
	$(PY) -m hearlib scenes --out $(SCENES_DIR)/heldout --n $(MODEL_HELDOUT_SCENES) --seed 1 --workers 2

model: scenes
	$(PY) -m hearlib train --data $(SCENES_DIR)/train --heldout $(SCENES_DIR)/heldout \
		--out data/models --size all --seed $(MODEL_SEED) $(MODEL_TRAIN_ARGS)
