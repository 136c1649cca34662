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
model = "data/models/hear-organism-s"      # the default organism (the first column)
organisms = ["data/models/hear-organism-s", "data/models/hear-organism-r8-tuned"]   # compared; missing folders are skipped
data = "data/scenes/study-400"
n_size_samples = 20                         # samples per organism for Figs. 3A/3C/7 and Table 2
n_size_tsne_samples = 36                    # samples per organism for Fig. 3E (per_class at most per category)
per_class = 10
min_per_class = 4
n_organism_prompt_samples = 6               # samples per organism for Table 1 (each: ten attributions)
n_masks = 1000
ratio = 0.75
seed = 0
n_mean_images = 32
correct_only = True
method = "fast"
batch_size = "auto"
device = None
store = "data/store/study"
out = "figures"
profile = "quick"

# %%
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.method import effects as EF
from hearlib.paper import plotting as P
from hearlib.paper.plan import present_on_disk
from hearlib.prompts import ALTERNATIVE_PROMPTS
from hearlib.paper.report import Report, markdown_table
from hearlib.paper.study import Study, stack

common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device,
              profile=profile)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed)
organisms = list(organisms or [model])           # none given: the main model's six numbers alone
present = [m for m in organisms if present_on_disk(m)]
for m in organisms:
    if m not in present:
        print(f"skipped {m}: not found (make model-staged / make model-ingredients train it)")
st = Study(model, data, **common)
report = Report("10_organisms", out, dict(profile=profile, model=P.model_label(st.model), model_id=st.model_id,
                                          organisms=[P.model_label(m) for m in present], data=st.dataset_id,
                                          n_size_samples=n_size_samples, n_size_tsne_samples=n_size_tsne_samples,
                                          n_organism_prompt_samples=n_organism_prompt_samples, R=n_mean_images,
                                          **settings))


def recipe_of(folder) -> str:
    """How the organism was trained, from its training record (fast / staged / staged minus an
    ingredient / staged with stage 5, the tower tuned at the end)."""
    folder = Path(str(folder))
    staged = folder / "training_stages.json"
    if staged.is_file():
        record = json.loads(staged.read_text())
        tuned = any(s.get("stage") == "tune" for s in record.get("stages", []))
        return ("staged" + "".join(f" − {k}" for k in record.get("without") or {})
                + (", tower tuned" if tuned else ""))
    trained = folder / "hearlib_training.json"
    if trained.is_file():
        return json.loads(trained.read_text()).get("recipe", "fast")
    return "—"


# %%
rows, layer_shares = [], {}
for m in present:
    sm = st if str(m) == str(model) else Study(m, data, **common)
    items = sm.samples(n_size_samples, correct_only=correct_only)
    attrs = sm.many("attribution", items, **settings)
    valid = sm.many("validation", items, **settings)
    L, H = attrs[0]["n_layers"], attrs[0]["n_heads"]
    # Fig. 3C: per layer, the mean share of samples whose x* contains the layer's heads
    per_layer = A.head_distribution(stack(valid, "x_star"), L, H).mean(axis=1)
    peak = int(np.argmax(per_layer))
    layer_shares[P.model_label(m)] = per_layer
    # Fig. 3A: heads HeAr needs; Fig. 7: single-head redundancy; Table 2: the linear fit
    criteria = list(valid[0]["criteria"])
    kf, kc = A.min_heads_per_criterion(valid)
    hear = criteria.index("HeAr")
    r2, rho = np.array([a["r2"] for a in attrs]), np.array([a["pearson"] for a in attrs])
    no_head = EF.share_without_important_head(stack(valid, "delta"), 0.05)
    # Fig. 3E: nearest neighbour in θ
    t_items = sm.samples(n_size_tsne_samples, correct_only=correct_only, per_class=per_class,
                         min_per_class=min_per_class)
    if len({it.label for it in t_items}) < 2:
        t_items = sm.samples(n_size_tsne_samples, correct_only=correct_only, per_class=per_class)
    t_theta = stack(sm.many("attribution", t_items, **settings), "theta")
    same, chance = A.same_label_rate(t_theta, [it.label for it in t_items])
    # Table 1: θ under the paper prompt against each alternative prompt
    p_items = sm.samples(n_organism_prompt_samples, correct_only=correct_only)
    base = stack(sm.many("attribution", p_items, desc="paper prompt", **settings), "theta")
    cos = np.concatenate([A.paired_cosine(base, stack(sm.many("attribution", p_items, desc=f"prompt {i}",
                                                                    prompt=prompt, **settings), "theta"))
                          for i, prompt in enumerate(ALTERNATIVE_PROMPTS, start=1)])
    rows.append(dict(organism=P.model_label(m), recipe=recipe_of(m), heads=f"{L} × {H}", samples=len(items),
                     layer_peak=peak, layers=L, depth=peak / max(1, L - 1), hear_faith=kf[:, hear].mean(),
                     hear_comp=kc[:, hear].mean(), r2=r2.mean(), r2_std=r2.std(), rho=rho.mean(), rho_std=rho.std(),
                     prompt_cos=float(np.nanmean(cos)), no_head=no_head, same=same, chance=chance,
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
for name, share in layer_shares.items():
    depth = np.linspace(0, 1, len(share)) if len(share) > 1 else np.zeros(1)
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
PAPER = {"Fig. 3C": "middle-to-late layers", "Fig. 3A": "HeAr needs the fewest heads of the four criteria",
         "Table 2": "0.82 ± 0.05 / 0.91 ± 0.03 (R² 0.77–0.92 over ten models)", "Table 1": "0.95 (0.91–0.97)",
         "Fig. 7": "80%", "Fig. 3E": "clusters by category (qualitative)"}
WHAT = {"Fig. 3C": "layer most often in x* (relative depth)", "Fig. 3A": "heads HeAr needs: faithfulness > 0.8 / completeness < 0.2",
        "Table 2": "held-out R² / Pearson ρ of θ·x + b", "Table 1": "cosine of θ, paper prompt vs the nine others",
        "Fig. 7": "samples where no single head costs > 5%", "Fig. 3E": "nearest neighbour in θ of the same category (chance)"}


def cells(r) -> dict:
    return {"Fig. 3C": f"layer {r.layer_peak} of {r.layers} ({r.depth:.2f})",
            "Fig. 3A": f"{r.hear_faith:.1f} / {r.hear_comp:.1f}",
            "Table 2": f"{r.r2:.2f} ± {r.r2_std:.2f} / {r.rho:.2f} ± {r.rho_std:.2f}",
            "Table 1": f"{r.prompt_cos:.2f}", "Fig. 7": f"{r.no_head:.0%}", "Fig. 3E": f"{r.same:.0%} ({r.chance:.0%})"}


def disagreements(r) -> list[str]:
    notes = []
    if r.depth < 1 / 3:
        notes.append(f"Fig. 3C: its important heads sit early (layer {r.layer_peak} of {r.layers}), "
                     "not in the middle-to-late layers")
    if r.r2 < 0.7 or r.rho < 0.85:
        notes.append(f"Table 2: its flow is less linear (R² {r.r2:.2f}, ρ {r.rho:.2f}; paper ≥ 0.77 / 0.88)")
    if r.prompt_cos < 0.9:
        notes.append(f"Table 1: θ depends more on the prompt's wording (cosine {r.prompt_cos:.2f}; paper 0.91–0.97)")
    if r.no_head < 0.8:
        notes.append(f"Fig. 7: single heads matter more (no head > 5% in {r.no_head:.0%} of samples; paper 80%)")
    if r.same <= 2 * r.chance:
        notes.append("Fig. 3E: θ clusters by category little above chance")
    return notes


table = pd.DataFrame([{"paper item": item, "what": WHAT[item],
                       **{f"{r.organism} ({r.recipe})": cells(r)[item] for r in results.itertuples()},
                       "paper (LLaVA-1.5-7B)": PAPER[item]} for item in WHAT])
report.table(table, "organisms_side_by_side", "Organisms",
             f"The six numbers per organism, each on the same {n_size_samples} samples "
             f"({n_size_tsne_samples} for Fig. 3E, {n_organism_prompt_samples} for Table 1).")
notes = [f"- **{r.organism}** ({r.recipe}): " + ("; ".join(disagreements(r)) or "agrees with the paper on all six")
         for r in results.itertuples()]
report.section("The organisms side by side",
               f"Each organism on the same {n_size_samples} samples ({n_size_tsne_samples} for Fig. 3E, "
               f"{n_organism_prompt_samples} for Table 1), `notebooks/10_organisms.py`; the recipes are in "
               "docs/ORGANISM.md.\n\n" + markdown_table(table) + "\n\nWhere each disagrees with the paper "
               "(generated from the numbers above):\n\n" + "\n".join(notes))
print(table.to_string(index=False))
print("\n".join(notes))

# %%
best = results.loc[results.depth.idxmax()]
report.headline("Organisms", "relative depth of the layer most often in x*, per organism",
                ", ".join(f"{r.organism} {r.depth:.2f}" for r in results.itertuples()),
                "middle-to-late layers", "" if best.depth >= 1 / 3 else
                "No organism here puts its image-to-text heads in the middle or late layers.")
report.write_readme()
