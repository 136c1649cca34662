# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Head explorer
#
# One sample and one head at a time, from the records `make figures` collected (nothing is
# computed when the store is filled). Pick a model, a dataset and a sample; θ is the layers × heads
# map (click a cell of the button grid, or pick from the list ordered by θ). For the chosen head:
# its Eq. 10 attention over the image in the model's own token geometry, its logit lens, its
# single-head Δ and how often it is in x* across samples. The "keep top-k" slider shows π with only
# the k heads of largest θ intact (the stored HeAr faithfulness curve) next to the linear
# prediction θ·x + b. "load model" then "run it now" ablates that set live (the organism runs on
# CPU); "export head set" writes it as JSON.
#
# Below the widgets the same panels are drawn as a static figure for each model (its default sample and
# top head, in its own token geometry), which is what an executed copy (papermill, nbval) shows.

# %% tags=["parameters"]
model = "data/models/hear-organism-s"      # organism folder, checkpoint folder, hub id or registry name
models = ["data/models/hear-organism-s", "data/models/hear-organism-m", "data/models/hear-organism-r8-tuned"]
data = "data/scenes/study-400"             # COCO-format folder (or `python -m hearlib scenes` output)
n_samples = 40                              # correct samples (paper: 200)
n_size_samples = 20                         # samples of each compared model (Figs. 11-15)
n_masks = 1000                              # M head masks per sample (paper: 10,000)
ratio = 0.75                                # p, share of heads ablated per mask
seed = 0
n_mean_images = 32                          # R, images averaged for the mean keys/values (paper: 100)
correct_only = True                         # keep samples the model answers correctly (paper)
method = "fast"
batch_size = "auto"
device = None
store = "data/store/study"
profile = "quick"
export = "build/explore"                    # folder of the exported head sets

# %%
from functools import partial

from IPython.display import Image, display

from hearlib.paper.explore.drawing import draw_models, draw_static, figure_png, stability_text
from hearlib.paper.explore.ui import ExplorerUI, open_explorer

opener = partial(open_explorer, store=store, profile=profile, n_samples=n_samples, correct_only=correct_only,
                 n_masks=n_masks, ratio=ratio, seed=seed, n_mean_images=n_mean_images, method=method,
                 batch_size=batch_size, device=device, main=model, n_size_samples=n_size_samples)
ui = ExplorerUI(opener, [model] + [m for m in models if m != model], [data], export_folder=export)
display(ui.widget)

# %% [markdown]
# ## The same panels, static (default sample, its top head, k = k*), for each model
#
# One figure per model (the main one, then each compared one): the head's attention is drawn in that
# model's own image-token geometry (grids, tiles, global views).

# %%
for name in [model] + [m for m in models if str(m) != str(model)]:
    ex = ui.ex if str(name) == str(model) else opener(name, data)
    item = ex.items[0]
    top_head = ex.heads_by_theta(item)[0][0]
    k = ex.sample_info(item).get("k_star", 1)
    display(Image(figure_png(draw_static(ex, item, top_head, k), dpi=100)))
    print(f"{len(ex.items)} samples of {ex.study.model_id}; nothing computed: {not ex.study.pipeline.computed}")

# %% [markdown]
# ## The model over its samples, and a second model beside it
#
# Mean θ over the model's samples (x* of at least half of them outlined) with how stable the set is
# (bootstrap intervals, x* overlap between halves of the samples); beside it the first compared
# model: `hearlib heads diff`'s figure where the two have one geometry, else the two maps.

# %%
others = [m for m in models if str(m) != str(model)]
first = ui.ex.head_document()
second = opener(others[0], data).head_document() if others else None
for document in [first] + ([second] if second else []):
    print(f"{document['model_id']}: {stability_text(document)}")
display(Image(figure_png(draw_models(first, second), dpi=100)))
