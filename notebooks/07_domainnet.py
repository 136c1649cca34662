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
# # 07 · Image styles: DomainNet real / sketch / clipart (Fig. 9 A–E)
#
# The same analyses on a DomainNet-layout dataset (`<root>/<domain>/<class>/<image>`): validation
# (9A), head distribution (9B), θ against attention weight (9C), examples (9D) and t-SNE coloured by
# domain (9E). The paper: head patterns stay consistent across styles when the semantics are kept.
# The generated scenes render every scene in all three styles, so we can also compare θ of the
# *same* scene across styles.

# %% tags=["parameters"]
model = "data/models/hear-organism-s"
data = "data/scenes/heldout"
domain_data = None                          # DomainNet-layout folder; None = `data` (scenes have domains/)
domains = ["real", "sketch", "clipart"]
n_domain_samples = 60                       # paper: 300 images over the three domains
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

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from openTSNE import TSNE
from PIL import Image

from hearlib import analysis as A
from hearlib.report import Report, fmt_pm, head_grid
from hearlib.study import Study, stack

st = Study(model, domain_data or data, kind="domainnet", domains=domains, store=store, n_mean_images=n_mean_images,
           method=method, batch_size=batch_size, device=device)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed)
report = Report("07_domainnet", out, dict(profile=profile, model=st.model_id, data=st.dataset_id, domains=domains,
                                          n_domain_samples=n_domain_samples, R=n_mean_images, **settings))
items = st.samples(n_domain_samples, correct_only=correct_only, interleave=("domain", "label"))
attrs = st.many("attribution", items, **settings)
valid = st.many("validation", items, **settings)
dom = np.array([it.domain for it in items])
labels = np.array([it.label for it in items])
thetas = stack(attrs, "theta")
L, H = attrs[0]["n_layers"], attrs[0]["n_heads"]
criteria = list(valid[0]["criteria"])
present = [d for d in domains if (dom == d).any()]
print(st, pd.Series(dom).value_counts().to_dict())

# %% [markdown]
# ## Fig. 9A — minimum heads per criterion and domain

# %%
colors = {"HeAr": "tab:red", "Random": "tab:gray", "Attention": "tab:blue", "Causal": "tab:green"}
rows = []
for e, d in zip(valid, dom):
    for ci, c in enumerate(criteria):
        rows.append({"domain": d, "criterion": c,
                     "faithfulness>0.8": A.min_heads(e["faithfulness"][ci], 0.8, "faithfulness"),
                     "completeness<0.2": A.min_heads(e["completeness"][ci], 0.2, "completeness")})
k = pd.DataFrame(rows)
agg = k.groupby(["domain", "criterion"]).mean().reset_index()
report.table(agg, "fig9a_validation", "Fig. 9A", "Mean minimum number of heads per domain and criterion.")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
width = 0.8 / len(criteria)
for ax, key in zip(axes, ("faithfulness>0.8", "completeness<0.2")):
    for ci, c in enumerate(criteria):
        vals = [agg[(agg.domain == d) & (agg.criterion == c)][key].mean() for d in present]
        ax.bar(np.arange(len(present)) + ci * width, vals, width, color=colors[c], label=c)
    ax.set_xticks(np.arange(len(present)) + 0.4 - width / 2)
    ax.set_xticklabels(present)
    ax.set_title(key)
    ax.set_ylabel("minimum heads")
axes[0].legend(fontsize=7)
report.figure(fig, "fig9a_validation", "Fig. 9A")
hear_best = all(
    agg[(agg.domain == d) & (agg.criterion == "HeAr")][key].mean()
    <= agg[(agg.domain == d) & (agg.criterion != "HeAr")][key].min()
    for d in present for key in ("faithfulness>0.8", "completeness<0.2"))
report.headline("Fig. 9A", "HeAr needs the fewest heads in every domain (ties count)", str(hear_best),
                "True (vs Attention and Causal)", "" if hear_best else "Not in every domain on the organism.")

# %% [markdown]
# ## Fig. 9B — head distribution per domain; Fig. 9C — θ against attention weight per domain

# %%
fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.3), squeeze=False)
maps = {}
for ax, d in zip(axes[0], present):
    maps[d] = A.head_distribution(stack([v for v, x in zip(valid, dom) if x == d], "x_star"), L, H)
    im = ax.imshow(maps[d], cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_title(d)
    head_grid(ax)
fig.colorbar(im, ax=axes, shrink=0.8)
report.figure(fig, "fig9b_head_distribution", "Fig. 9B")
map_cos = {f"{a}–{b}": A.cosine_similarity(maps[a], maps[b]) for i, a in enumerate(present) for b in present[i + 1:]}

fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.3), squeeze=False)
depth = A.relative_depth(L, H)
for ax, d in zip(axes[0], present):
    sel = dom == d
    att = stack([a for a, x in zip(attrs, dom) if x == d], "image_attention").reshape(sel.sum(), -1)
    sc = ax.scatter(att.ravel(), thetas[sel].ravel(), c=np.broadcast_to(depth, att.shape).ravel(), s=5, alpha=0.6)
    ax.set_title(f"{d}: ρ = {A.pearson(att.ravel(), thetas[sel].ravel()):.2f}")
    ax.set_xlabel("image attention weight")
    ax.set_ylabel("θ")
fig.colorbar(sc, ax=axes, shrink=0.8, label="relative depth")
report.figure(fig, "fig9c_attention_scatter", "Fig. 9C")

# %% [markdown]
# ## Fig. 9D — examples; Fig. 9E — t-SNE of θ coloured by domain and by category

# %%
fig, axes = plt.subplots(1, len(present), figsize=(2.2 * len(present), 2.4), squeeze=False)
for ax, d in zip(axes[0], present):
    it = next(it for it in items if it.domain == d)
    ax.imshow(Image.open(it.path).convert("RGB"))
    ax.set_title(f"{d}: {it.label}", fontsize=8)
    ax.axis("off")
report.figure(fig, "fig9d_examples", "Fig. 9D")

xy = np.asarray(TSNE(perplexity=max(2.0, min(30.0, (len(items) - 1) / 3.0)), metric="cosine", random_state=seed,
                     n_jobs=1, verbose=False).fit(thetas))
fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
for ax, groups, title in ((axes[0], dom, "domain"), (axes[1], labels, "category")):
    names = sorted(set(groups))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, g in enumerate(names):
        ax.scatter(xy[groups == g, 0], xy[groups == g, 1], s=12, color=cmap(i % cmap.N), label=g)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, ncol=2 if len(names) > 8 else 1)
report.figure(fig, "fig9e_tsne", "Fig. 9E")

# %% [markdown]
# ## Headline: are head patterns shared across styles?

# %%
# same scene in two styles (scenes share their file name across domains) against different scenes
stem = np.array([it.image_id.rsplit("/", 1)[-1] for it in items])
same, diff_same_class = [], []
for i in range(len(items)):
    for j in range(i + 1, len(items)):
        if dom[i] == dom[j]:
            continue
        c = A.cosine_similarity(thetas[i], thetas[j])
        if stem[i] == stem[j]:
            same.append(c)
        elif labels[i] == labels[j]:
            diff_same_class.append(c)
rows = [{"comparison": "head distribution maps " + k, "cosine": v} for k, v in map_cos.items()]
rows += [{"comparison": "θ, same scene across styles", "cosine": fmt_pm(same) if same else "n/a"},
         {"comparison": "θ, same class, different scene and style", "cosine": fmt_pm(diff_same_class) if diff_same_class else "n/a"}]
report.table(pd.DataFrame(rows), "fig9_domain_consistency", "Fig. 9B")
mean_map = np.mean(list(map_cos.values())) if map_cos else float("nan")
report.headline("Fig. 9B", "cosine of head-distribution maps between domains (mean)", f"{mean_map:.2f}",
                "head patterns consistent across domains (qualitative)",
                "" if mean_map > 0.8 else "The organism's head patterns change more with style than the paper's.")
report.write_readme()
