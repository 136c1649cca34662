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
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
from functools import partial

from IPython.display import Image, display

from hearlib.paper.explore.drawing import draw_models, draw_static, figure_png, stability_text
from hearlib.paper.explore.ui import ExplorerUI, open_explorer
from hearlib.paper.notebook import open_notebook

nb = open_notebook("00_explore", profile, **overrides)
p = nb.params

opener = partial(open_explorer, store=p.store, profile=p.profile, n_samples=p.n_samples, correct_only=p.correct_only,
                 n_masks=p.n_masks, ratio=p.ratio, seed=p.seed, n_mean_images=p.n_mean_images, method=p.method,
                 batch_size=p.batch_size, device=p.device, main=p.model, n_size_samples=p.n_size_samples)
ui = ExplorerUI(opener, [p.model] + [m for m in p.models if m != p.model], [p.data], export_folder=p.export)
display(ui.widget)

# %% [markdown]
# ## The same panels, static (default sample, its top head, k = k*), for each model
#
# One figure per model (the main one, then each compared one): the head's attention is drawn in that
# model's own image-token geometry (grids, tiles, global views).

# %%
for name in [p.model] + [m for m in p.models if str(m) != str(p.model)]:
    ex = ui.ex if str(name) == str(p.model) else opener(name, p.data)
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
others = [m for m in p.models if str(m) != str(p.model)]
first = ui.ex.head_document()
second = opener(others[0], p.data).head_document() if others else None
for document in [first] + ([second] if second else []):
    print(f"{document['model_id']}: {stability_text(document)}")
display(Image(figure_png(draw_models(first, second), dpi=100)))
