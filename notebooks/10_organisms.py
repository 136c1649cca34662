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
# # 10 · The organisms side by side (Figs. 3A/3C/3E/7, Tables 1/2)
#
# The same six numbers for every organism, beside the paper's: where the heads that carry the
# image-to-text flow sit (Fig. 3C), how many HeAr needs (Fig. 3A), how linear the flow is
# (Table 2), how much θ depends on the prompt's wording (Table 1), how redundant single heads
# are (Fig. 7) and whether θ clusters by category (Fig. 3E). The fast-recipe organisms and the
# staged one (docs/ORGANISM.md) are built differently; which is the better miniature of a real
# LVLM is read off this table. Run with the ingredient organisms (`make model-ingredients`,
# `make figures-ingredients`) it is also the ingredient study: the staged recipe with one step
# removed at a time.
#
# Every organism is measured on the same settings and sample counts (the compared-model counts
# of the other notebooks), so the default organism's numbers here can differ slightly from the
# other notebooks', which use more samples.

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
from hearlib.paper.organisms import PAPER, WHAT, disagreements, recipe_of, six_cells
from hearlib.paper.plan import present_on_disk
from hearlib.prompts import ALTERNATIVE_PROMPTS
from hearlib.paper.report import markdown_table
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("10_organisms", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

organisms = list(p.organisms or [p.model])           # none given: the main model's six numbers alone
present = [m for m in organisms if present_on_disk(m)]
nb.record_settings(organisms=[P.model_label(m) for m in present])
for m in organisms:
    if m not in present:
        print(f"skipped {m}: not found (make model-staged / make model-ingredients train it)")


# %%
rows, layer_shares = [], {}
for m in present:
    sm = nb.study_of(m)
    items = sm.samples(p.n_size_samples, correct_only=p.correct_only)
    attrs = sm.many("attribution", items, **settings)
    valid = sm.many("validation", items, **settings)
    L, H = attrs[0]["n_layers"], attrs[0]["n_heads"]
    # Fig. 3C: per layer, the mean share of samples whose x* contains the layer's heads
    per_layer = A.head_distribution(stack(valid, "x_star"), L, H).mean(axis=1)
    peak, n_decoder = sm.decoder_layer(int(np.argmax(per_layer)), L)
    layer_shares[P.model_label(m)] = sm.row_depths(L), per_layer
    # Fig. 3A: heads HeAr needs; Fig. 7: single-head redundancy; Table 2: the linear fit
    criteria = list(valid[0]["criteria"])
    kf, kc = A.min_heads_per_criterion(valid)
    hear = criteria.index("HeAr")
    r2, rho = np.array([a["r2"] for a in attrs]), np.array([a["pearson"] for a in attrs])
    no_head_hits = EF.samples_without_important_head(stack(valid, "delta"), 0.05)
    # Fig. 3E: nearest neighbour in θ
    t_items = sm.samples(p.n_size_tsne_samples, correct_only=p.correct_only, per_class=p.per_class,
                         min_per_class=p.min_per_class)
    if len({it.label for it in t_items}) < 2:
        t_items = sm.samples(p.n_size_tsne_samples, correct_only=p.correct_only, per_class=p.per_class)
    t_theta = stack(sm.many("attribution", t_items, **settings), "theta")
    same, chance = A.same_label_rate(t_theta, [it.label for it in t_items])
    same_hits = A.same_label_hits(t_theta, [it.label for it in t_items])
    # Table 1: θ under the paper prompt against each alternative prompt
    p_items = sm.samples(p.n_organism_prompt_samples, correct_only=p.correct_only)
    base = stack(sm.many("attribution", p_items, desc="paper prompt", **settings), "theta")
    cos = np.stack([A.paired_cosine(base, stack(sm.many("attribution", p_items, desc=f"prompt {i}",
                                                              prompt=prompt, **settings), "theta"))
                    for i, prompt in enumerate(ALTERNATIVE_PROMPTS, start=1)])          # [prompts, samples]
    rows.append(dict(organism=P.model_label(m), recipe=recipe_of(m), heads=f"{L} × {H}", samples=len(items),
                     layer_peak=peak, layers=n_decoder, depth=peak / max(1, n_decoder - 1), hear_faith=kf[:, hear].mean(),
                     hear_comp=kc[:, hear].mean(), r2=r2.mean(), r2_std=r2.std(), rho=rho.mean(), rho_std=rho.std(),
                     prompt_cos=float(np.nanmean(cos)), no_head=float(no_head_hits.mean()), same=same, chance=chance,
                     # 95% bootstrap intervals over the samples (Table 1: each sample's mean over the nine prompts)
                     hear_faith_ci=A.bootstrap_interval(kf[:, hear]), hear_comp_ci=A.bootstrap_interval(kc[:, hear]),
                     prompt_cos_ci=A.bootstrap_interval(np.nanmean(cos, axis=0)), prompt_samples=len(p_items),
                     no_head_ci=A.bootstrap_interval(no_head_hits), same_ci=A.bootstrap_interval(same_hits),
                     tsne_samples=len(t_items),
                     per_layer=" ".join(f"{v:.2f}" for v in per_layer)))
    print(f"{P.model_label(m)}: {len(items)} samples, N = {L}×{H}, x* peak at layer {peak}")
if not rows:
    raise SystemExit(f"none of the organisms {organisms} was found: train them or give `organisms`")
results = pd.DataFrame(rows)
report.table(results, "organisms_numbers", "Organisms", "The six numbers per organism (raw values).")

# %% [markdown]
# ## Where the important heads sit: x* share per layer, by relative depth

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for name, (depth, share) in layer_shares.items():
    ax.plot(depth, share, "o-", label=name)
ax.axvspan(0.4, 1.0, color="0.9", zorder=0, label="paper: middle-to-late layers")
ax.set_xlabel("relative depth of the layer (0 = first, 1 = last)")
ax.set_ylabel("mean share of samples whose $x^*$\nhas the layer's heads")
ax.legend(fontsize=7)
ax.set_title("Fig. 3C per organism: where HeAr's heads sit", fontsize=9)
report.figure(fig, "organisms_layer_share", "Organisms")

# %% [markdown]
# ## The side-by-side table, with a note wherever an organism disagrees with the paper

# %%
table = pd.DataFrame([{"paper item": item, "what": WHAT[item],
                       **{f"{r.organism} ({r.recipe})": six_cells(r)[item] for r in results.itertuples()},
                       "paper (LLaVA-1.5-7B)": PAPER[item]} for item in WHAT])
report.table(table, "organisms_side_by_side", "Organisms",
             f"The six numbers per organism, each on at least {results.samples.min()} samples "
             f"({results.tsne_samples.min()} for Fig. 3E, {results.prompt_samples.min()} for Table 1); in brackets, "
             "95% bootstrap intervals over the samples.")
notes = [f"- **{r.organism}** ({r.recipe}): " + ("; ".join(disagreements(r)) or "agrees with the paper on all six")
         for r in results.itertuples()]
report.section("The organisms side by side",
               f"Each organism on at least {results.samples.min()} samples ({results.tsne_samples.min()} for Fig. 3E, "
               f"{results.prompt_samples.min()} for Table 1), `notebooks/10_organisms.py`; the recipes are in "
               "docs/ORGANISM.md.\n\n" + markdown_table(table) + "\n\nWhere each disagrees with the paper "
               "(generated from the numbers above):\n\n" + "\n".join(notes))
print(table.to_string(index=False))
print("\n".join(notes))

# %%
best = results.loc[results.depth.idxmax()]
report.headline("Organisms", "relative depth of the layer most often in x*, per organism",
                ", ".join(f"{r.organism} {r.depth:.2f}" for r in results.itertuples()),
                "middle-to-late layers", verdict="agrees" if best.depth >= 1 / 3 else "disagrees",
                note="" if best.depth >= 1 / 3 else
                "No organism here puts its image-to-text heads in the middle or late layers.")
nb.finish()
