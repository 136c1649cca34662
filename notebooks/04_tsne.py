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
# # 04 · Patterns of heads across samples (Fig. 3E/13, Fig. 10)
#
# t-SNE (openTSNE) of the θ vectors, one point per sample, coloured by category and
# super-category (the paper: objects with ≥ 10 correct samples, up to 15 each). Then the head
# vectors h_n = (θ_n over samples) of heads with θ_n > 0.1 in at least one sample, hierarchically
# clustered (Fig. 10).

# %% tags=["parameters"]
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.method import effects as EF
from hearlib.paper import plotting as P
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("04_tsne", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

items = st.samples(p.n_tsne_samples, correct_only=p.correct_only, per_class=p.per_class, min_per_class=p.min_per_class)
if len({it.label for it in items}) < 2:         # too few per class: drop the minimum rather than fail
    items = st.samples(p.n_tsne_samples, correct_only=p.correct_only, per_class=p.per_class)
attrs = st.many("attribution", items, **settings)
thetas = stack(attrs, "theta")
labels = np.array([it.label for it in items])
supers = np.array([str(it.supercategory) for it in items])
print(st, f"{len(items)} samples, {len(set(labels))} categories")

# %% [markdown]
# ## Fig. 3E / Fig. 13 — Samples with the same object share their important heads: θ clusters by category
#
# t-SNE of θ by category and super-category, for the main model and every model compared.

# %%
xy = A.tsne_embedding(thetas, seed=p.seed)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
P.embedding_scatter(axes[0], xy, labels, f"{P.model_label(st.model)}: t-SNE of {P.THETA}, by category")
P.embedding_scatter(axes[1], xy, supers, "by super-category")
report.figure(fig, "fig3e_tsne", "Fig. 3E")

# %%
fig, axes = plt.subplots(1, len(p.models), figsize=(4.5 * len(p.models), 4), squeeze=False)
for ax, m in zip(axes[0], p.models):
    sm = nb.study_of(m)
    its, at = items, attrs
    if sm is not st:
        its = sm.samples(p.n_size_tsne_samples, correct_only=p.correct_only, per_class=p.per_class,
                         min_per_class=p.min_per_class)
        if len({it.label for it in its}) < 2:
            its = sm.samples(p.n_size_tsne_samples, correct_only=p.correct_only, per_class=p.per_class)
        at = sm.many("attribution", its, **settings)
    P.embedding_scatter(ax, A.tsne_embedding(stack(at, "theta"), seed=p.seed), np.array([it.label for it in its]),
                        f"{P.model_label(m)}: t-SNE of {P.THETA}")
report.figure(fig, "fig13_tsne_models", "Fig. 13")
rate, chance = A.same_label_rate(thetas, labels)
rate_s, chance_s = A.same_label_rate(thetas, supers)
report.headline("Fig. 3E", "share of samples whose nearest neighbour in θ (cosine) has the same "
                "category / super-category",
                f"{rate:.0%} / {rate_s:.0%} (chance {chance:.0%} / {chance_s:.0%})",
                "samples cluster by category and super-category (qualitative)",
                "" if rate > 2 * chance else "On the organism θ vectors cluster by category little above chance.",
                verdict="agrees" if rate > 2 * chance else "weaker" if rate > chance else "disagrees")

# %% [markdown]
# ## Fig. 10 — Two kinds of important heads: sample-agnostic ones and sample-specific ones
#
# The head vectors with θ_n > 0.1 in at least one sample, hierarchically clustered.

# %%
heads, vectors = EF.head_vectors(thetas, p.head_threshold)
H = attrs[0]["n_heads"]
why = None
if len(heads) == 0:
    why = f"no head has θ > {p.head_threshold} in any of the {len(thetas)} samples: there is no head vector to cluster"
    print(why)
    fig = P.message_figure(f"{P.model_label(st.model)}: no head with $\\theta_n$ > {p.head_threshold}")
else:
    cl = A.cluster_head_vectors(vectors)
    fig = P.head_vector_figure(vectors, cl.row_order, cl.col_order, [A.head_name(n, H) for n in heads], labels)
    fig.suptitle(f"{P.model_label(st.model)}: heads with $\\theta_n$ > {p.head_threshold} in at least one sample",
                 fontsize=9)
report.figure(fig, "fig10_head_vectors", "Fig. 10", why=why)
agnostic = int(EF.sample_agnostic_heads(thetas, p.head_threshold)[2].sum())
report.headline("Fig. 10", f"heads with θ_n > {p.head_threshold} in some sample / sample-agnostic ones among them "
                f"(θ_n > {p.head_threshold} in ≥ 50% of samples)",
                f"{len(heads)} of {thetas.shape[1]} heads / {agnostic}",
                "two clusters: sample-agnostic and sample-specific heads",
                verdict="agrees" if 0 < agnostic < len(heads) else "disagrees")
nb.finish()
