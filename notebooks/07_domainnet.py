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
# # 07 · Image styles: DomainNet real / sketch / clipart (Fig. 9 A–E)
#
# The same analyses on a DomainNet-layout dataset (`<root>/<domain>/<class>/<image>`): validation
# (9A), head distribution (9B), θ against attention weight (9C), examples (9D) and t-SNE coloured by
# domain (9E). The paper: head patterns stay consistent across styles when the semantics are kept.
# The generated scenes render every scene in all three styles, so we can also compare θ of the
# *same* scene across styles.

# %% tags=["parameters"]
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.paper import plotting as P
from hearlib.paper.report import fmt_pm
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("07_domainnet", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

items = st.samples(p.n_domain_samples, correct_only=p.correct_only, interleave=("domain", "label"))
attrs = st.many("attribution", items, **settings)
valid = st.many("validation", items, **settings)
dom = np.array([it.domain for it in items])
labels = np.array([it.label for it in items])
thetas = stack(attrs, "theta")
L, H = attrs[0]["n_layers"], attrs[0]["n_heads"]
criteria = list(valid[0]["criteria"])
present = [d for d in p.domains if (dom == d).any()]
print(st, pd.Series(dom).value_counts().to_dict())

# %% [markdown]
# ## Fig. 9A — HeAr needs the fewest heads in every image style
#
# The minimum heads per criterion and domain.

# %%
kf, kc = A.min_heads_per_criterion(valid)                     # [S, C] each
k = pd.DataFrame([{"domain": d, "criterion": c, "faithfulness>0.8": kf[i, ci], "completeness<0.2": kc[i, ci]}
                  for i, d in enumerate(dom) for ci, c in enumerate(criteria)])
agg = k.groupby(["domain", "criterion"]).mean().reset_index()
report.table(agg, "fig9a_validation", "Fig. 9A", "Mean minimum number of heads per domain and criterion.")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), layout="constrained")
for ax, key in zip(axes, ("faithfulness>0.8", "completeness<0.2")):
    P.grouped_bars(ax, present, {c: [agg[(agg.domain == d) & (agg.criterion == c)][key].mean() for d in present]
                                 for c in criteria}, ylabel="minimum heads", title=f"{P.model_label(st.model)}: {key}")
axes[0].legend(fontsize=7)
report.figure(fig, "fig9a_validation", "Fig. 9A")
hear_best = all(
    agg[(agg.domain == d) & (agg.criterion == "HeAr")][key].mean()
    <= agg[(agg.domain == d) & (agg.criterion != "HeAr")][key].min()
    for d in present for key in ("faithfulness>0.8", "completeness<0.2"))
report.headline("Fig. 9A", "does HeAr need the fewest heads (ties count) for both thresholds in every domain?",
                f"yes, in all {len(present)} domains" if hear_best else "no", "yes (vs Attention and Causal)",
                verdict="agrees" if hear_best else "weaker",
                note="" if hear_best else "Not in every domain on the organism.")

# %% [markdown]
# ## Fig. 9B / Fig. 9C — The important heads stay the same across image styles
#
# The head distribution per domain (9B) and θ against the attention weight per domain (9C); then the
# cosine between the domains' maps, and between θ of one scene drawn in two styles.

# %%
maps = {d: A.head_distribution(stack([v for v, x in zip(valid, dom) if x == d], "x_star"), L, H) for d in present}
fig = P.head_map_panels([maps[d] for d in present], present, cols=len(present), vmin=0, vmax=1,
                        layers=[st.layer_rows()] * len(present),
                        label="share of samples whose $x^*$ has the head", panel_size=(4.0, 3.3),
                        suptitle=P.model_label(st.model))
report.figure(fig, "fig9b_head_distribution", "Fig. 9B")
map_cos = {f"{a}–{b}": A.cosine_similarity(maps[a], maps[b]) for i, a in enumerate(present) for b in present[i + 1:]}

fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.3), squeeze=False, layout="constrained")
for ax, d in zip(axes[0], present):
    sc, _ = P.theta_attention_scatter(ax, thetas[dom == d], stack([a for a, x in zip(attrs, dom) if x == d],
                                                                  "image_attention"), L, H, d)
fig.colorbar(sc, ax=axes, shrink=0.8, label=P.DEPTH)
fig.suptitle(P.model_label(st.model), fontsize=9)
report.figure(fig, "fig9c_attention_scatter", "Fig. 9C")
# same scene in two styles (scenes share their file name across domains) against different scenes
stem = np.array([it.image_id.rsplit("/", 1)[-1] for it in items])
same, diff_same_class = A.cross_domain_cosines(thetas, dom, stem, labels)
rows = [{"comparison": "head distribution maps " + k, "cosine": v} for k, v in map_cos.items()]
rows += [{"comparison": "θ, same scene across styles", "cosine": fmt_pm(same)},
         {"comparison": "θ, same class, different scene and style", "cosine": fmt_pm(diff_same_class)}]
report.table(pd.DataFrame(rows), "fig9_domain_consistency", "Fig. 9B")
mean_map = np.mean(list(map_cos.values())) if map_cos else float("nan")
report.headline("Fig. 9B", "cosine similarity of the head-distribution maps between two domains, mean over pairs",
                f"{mean_map:.2f}", "head patterns consistent across domains (qualitative)",
                verdict="agrees" if mean_map > 0.8 else "weaker" if mean_map > 0.5 else "disagrees",
                note="" if mean_map > 0.8 else "The organism's head patterns change more with style than the paper's.")

# %% [markdown]
# ## Fig. 9D / Fig. 9E — θ groups samples by what they show, not by how it is drawn
#
# One example per domain (9D), and the t-SNE of θ coloured by domain and by category (9E).

# %%
examples = [next(it for it in items if it.domain == d) for d in present]
fig = P.image_panels([it.path for it in examples], [f"{it.domain}: {it.label}" for it in examples])
report.figure(fig, "fig9d_examples", "Fig. 9D")

xy = A.tsne_embedding(thetas, seed=p.seed)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
P.embedding_scatter(axes[0], xy, dom, f"{P.model_label(st.model)}: t-SNE of {P.THETA}, by domain")
P.embedding_scatter(axes[1], xy, labels, "by category")
report.figure(fig, "fig9e_tsne", "Fig. 9E")
by_category, chance_category = A.same_label_rate(thetas, labels)
by_style, chance_style = A.same_label_rate(thetas, dom)
report.headline("Fig. 9E", "share of samples whose nearest neighbour in θ (cosine) has the same category / "
                "the same style (chance)",
                f"{by_category:.0%} ({chance_category:.0%}) / {by_style:.0%} ({chance_style:.0%})",
                "clusters by category across styles (qualitative)",
                verdict="agrees" if by_category - chance_category > by_style - chance_style else "disagrees")
nb.finish()
