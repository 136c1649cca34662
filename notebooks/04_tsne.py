# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
model = "data/models/hear-organism-s"
models = ["data/models/hear-organism-s", "data/models/hear-organism-m", "data/models/hear-organism-l"]
data = "data/scenes/heldout"
n_masks = 1000
ratio = 0.75
seed = 0
n_mean_images = 32
correct_only = True
method = "fast"
batch_size = 64
device = None
store = "data/store/study"
out = "figures"
profile = "quick"
per_class = 15                              # paper: up to 15 samples per object
min_per_class = 10                          # paper: objects with at least 10 correct samples
n_tsne_samples = 180
n_size_tsne_samples = 60                    # per model for Fig. 13
head_threshold = 0.1                        # Fig. 10: θ_n > 0.1 in at least one sample

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from openTSNE import TSNE

from hearlib import analysis as A
from hearlib.report import Report
from hearlib.study import Study, stack

common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device)
st = Study(model, data, **common)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed)
report = Report("04_tsne", out, dict(profile=profile, model=st.model_id, data=st.dataset_id, per_class=per_class,
                                     min_per_class=min_per_class, n_tsne_samples=n_tsne_samples,
                                     R=n_mean_images, **settings))


def collect(study, n):
    its = study.samples(n, correct_only=correct_only, per_class=per_class, min_per_class=min_per_class)
    if len({it.label for it in its}) < 2:       # too few per class: drop the minimum rather than fail
        its = study.samples(n, correct_only=correct_only, per_class=per_class)
    return its, study.many("attribution", its, **settings)


items, attrs = collect(st, n_tsne_samples)
thetas = stack(attrs, "theta")
labels = np.array([it.label for it in items])
supers = np.array([str(it.supercategory) for it in items])
print(st, f"{len(items)} samples, {len(set(labels))} categories")

# %% [markdown]
# ## Fig. 3E / Fig. 13 — t-SNE of θ

# %%
def embed(x, seed=seed):
    perplexity = max(2.0, min(30.0, (len(x) - 1) / 3.0))
    return np.asarray(TSNE(perplexity=perplexity, metric="cosine", random_state=seed, n_jobs=1,
                           verbose=False).fit(x))


def draw(ax, xy, groups, title):
    names = sorted(set(groups))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, g in enumerate(names):
        sel = groups == g
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, color=cmap(i % cmap.N), label=g)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, markerscale=0.8, loc="best", ncol=2 if len(names) > 8 else 1)


def same_label_rate(x, groups):
    """Share of samples whose nearest neighbour (cosine, in θ space) has the same label, and chance."""
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(axis=1)
    _, counts = np.unique(groups, return_counts=True)
    n = len(groups)
    chance = float(((counts * (counts - 1)).sum()) / (n * (n - 1)))
    return float((groups[nn] == groups).mean()), chance


xy = embed(thetas)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
draw(axes[0], xy, labels, f"{st.model_id}: category")
draw(axes[1], xy, supers, "super-category")
report.figure(fig, "fig3e_tsne", "Fig. 3E")
rate, chance = same_label_rate(thetas, labels)
rate_s, chance_s = same_label_rate(thetas, supers)
report.headline("Fig. 3E", "nearest neighbour in θ has the same category / super-category",
                f"{rate:.0%} / {rate_s:.0%} (chance {chance:.0%} / {chance_s:.0%})",
                "samples cluster by category and super-category (qualitative)",
                "" if rate > 2 * chance else "On the organism θ vectors cluster by category little above chance.")

# %%
fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False)
for ax, m in zip(axes[0], models):
    sm = st if str(m) == str(model) else Study(m, data, **common)
    its, at = collect(sm, n_size_tsne_samples) if sm is not st else (items, attrs)
    draw(ax, embed(stack(at, "theta")), np.array([it.label for it in its]), sm.model_id)
report.figure(fig, "fig13_tsne_models", "Fig. 13")

# %% [markdown]
# ## Fig. 10 — head vectors with θ_n > 0.1 in at least one sample, hierarchically clustered

# %%
heads, vectors = A.head_vectors(thetas, head_threshold)
H = attrs[0]["n_heads"]
if len(heads) == 0:
    print(f"no head has θ > {head_threshold} in any sample")
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, f"no head with θ > {head_threshold}", ha="center")
else:
    cl = A.cluster_head_vectors(vectors)
    mat = vectors[cl.row_order][:, cl.col_order]
    fig, ax = plt.subplots(figsize=(min(16, 2 + 0.06 * mat.shape[1]), 1.5 + 0.22 * mat.shape[0]))
    vmax = np.abs(mat).max()
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(heads)))
    ax.set_yticklabels([f"L{n // H}H{n % H}" for n in heads[cl.row_order]], fontsize=6)
    ax.set_xticks(range(mat.shape[1]))
    ax.set_xticklabels(labels[cl.col_order], rotation=90, fontsize=5)
    ax.set_xlabel("samples (clustered)")
    ax.set_ylabel("heads (clustered)")
    fig.colorbar(im, ax=ax, label="θ_n")
report.figure(fig, "fig10_head_vectors", "Fig. 10")
used = (thetas[:, heads] > head_threshold).mean(axis=0) if len(heads) else np.array([])
agnostic = int((used >= 0.5).sum())
report.headline("Fig. 10", "heads with θ > 0.1 somewhere / used in ≥ 50% of samples (sample-agnostic)",
                f"{len(heads)} / {agnostic}", "two clusters: sample-agnostic and sample-specific heads")
report.write_readme()
