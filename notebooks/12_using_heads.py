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
# # 12 · Using the heads (beyond the paper)
#
# HeAr finds the heads that carry the image to the answer. This notebook *uses* them while the model
# generates (`engine.intervene`, `hearlib generate`; stage `generation` of `hearlib run`): head sets
# found on the first `n_samples` samples' θ (those of 02 and 03) are applied, during a plain greedy
# `generate`, to the next `n_using_samples` samples, which they were not found on:
#
# - **ablate** the top-k heads by mean θ (the paper's mean ablation of their image keys/values for
#   every text query, generated tokens included), against k random heads and the k heads with the
#   largest image attention weight (Eq. 10): accuracy (the first generated token is the answer's) and
#   how many answers change;
# - **scale** the top set's attention to the image down and up (multiplied by s and renormalised);
# - **examples** of changed answers;
# - **stability** of the set (docs/HEADS_FORMAT.md): bootstrap intervals of θ, the overlap of x*
#   between halves of the samples, and how the set changes with the number of samples.

# %% tags=["parameters"]
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import plotting as P
from hearlib.paper.report import markdown_table
from hearlib.paper.study import stack
from hearlib.records.heads import head_data
from hearlib.records.stages import Settings
from hearlib.paper.notebook import open_notebook

nb = open_notebook("12_using_heads", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

ITEM = "Using the heads (beyond the paper)"
BEYOND = "— (beyond the paper)"
using = dict(settings, head_set_samples=p.n_samples, head_set_correct_only=p.correct_only,
             head_set_sizes=p.head_set_sizes, random_sets=p.random_sets, scales=p.scales, max_new_tokens=p.max_new_tokens)

# %% [markdown]
# ## Generation under the interventions
#
# Greedy decoding of `max_new_tokens` tokens per sample, with no intervention and under each set. A
# sample is answered correctly where the first generated token is the answer's (the study's
# criterion); an answer *changed* where the generated text differs from the unablated model's.

# %%
measured_on = st.samples(p.n_using_samples, correct_only=p.correct_only, skip=p.n_samples)
records = st.many("generation", measured_on, **using)
sets = records[0].meta["sets"]
L, H = int(records[0].meta["n_layers"]), int(records[0].meta["n_heads"])
correct = stack(records, "correct").astype(bool)                  # [samples, 1 + sets]; column 0: none
texts = np.array([r.meta["texts"] for r in records], dtype=object)
base_correct, base_answers = correct[:, 0], texts[:, 0]
changed = (texts[:, 1:] != texts[:, :1]).mean(axis=0)              # per set
ks = sorted({s["k"] for s in sets if s["mode"] == "ablate"})


rows = []
for criterion in ("HeAr", "Attention", "Random"):
    for k in ks:
        columns = [i for i, s in enumerate(sets) if s["mode"] == "ablate" and s["criterion"] == criterion
                   and s["k"] == k]
        accuracy = [correct[:, 1 + i].mean() for i in columns]
        rows.append({"criterion": criterion, "k": k, "accuracy": float(np.mean(accuracy)),
                     "accuracy min–max": f"{min(accuracy):.2f}–{max(accuracy):.2f}" if len(accuracy) > 1 else "",
                     "answers changed": float(np.mean([changed[i] for i in columns])), "sets": len(columns)})
ablation = pd.DataFrame(rows).sort_values(["k", "criterion"]).reset_index(drop=True)
scaled = [(i, s) for i, s in enumerate(sets) if s["mode"] == "scale"]
scale_k = scaled[0][1]["k"] if scaled else max(ks)
scaling = pd.DataFrame([{"k": s["k"], "scale": s["scale"], "accuracy": float(correct[:, 1 + i].mean()),
                         "answers changed": float(changed[i])} for i, s in scaled])
top_set = next(s for s in sets if s["criterion"] == "HeAr" and s["k"] == max(ks))
print(f"{P.model_label(st.model)}: N = {L}×{H}; head sets from {len(records[0].meta['found_on'])} samples, "
      f"measured on {len(records)}; top {max(ks)} heads by θ: {[divmod(int(n), H) for n in top_set['heads']]}")
print(f"unablated accuracy {base_correct.mean():.2f} on {len(records)} samples")
ablation

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
ax = axes[0]
for criterion in ("HeAr", "Attention", "Random"):
    part = ablation[ablation.criterion == criterion]
    ax.plot(part.k, part.accuracy, "o-", color=P.criterion_color(criterion), label=criterion)
ax.axhline(base_correct.mean(), color="0.6", ls="--", lw=1, label="no intervention")
ax.set_xlabel("k heads ablated during generation"), ax.set_ylabel("accuracy (first token)"), ax.set_xticks(ks)
ax.set_ylim(-0.05, 1.05), ax.legend(fontsize=7), ax.set_title("ablating k heads", fontsize=9)
ax = axes[1]
if len(scaling):
    ax.plot(scaling.scale, scaling.accuracy, "o-", label="accuracy")
    ax.plot(scaling.scale, scaling["answers changed"], "s--", label="answers changed")
else:                        # Mllama: the keys of a cross-attention layer are all image keys
    ax.text(0.5, 0.5, "no scaled sets: renormalising\nover image keys only is a no-op", ha="center",
            va="center", transform=ax.transAxes, fontsize=8)
ax.axvline(1.0, color="0.8", lw=1)
ax.set_xlabel(f"scale s on the image attention of the top {scale_k} HeAr heads"), ax.set_ylim(-0.05, 1.05)
ax.legend(fontsize=7), ax.set_title("scaling the set's image attention", fontsize=9)
ax = axes[2]
heads_doc = head_data(st.pipeline.store.root, st.model_id, top_k=max(ks),      # the θ the sets come from
                      settings=st.pipeline.settings_digest("attribution", Settings.make(**settings))).document
rows_ = sorted(heads_doc["heads"], key=lambda r: -r["theta_mean"])[:max(3 * max(ks), 8)]
means_ = np.array([r["theta_mean"] for r in rows_])
ax.errorbar(np.arange(len(rows_)), means_, yerr=[means_ - [r["theta_ci_low"] for r in rows_],
                                                 [r["theta_ci_high"] for r in rows_] - means_], fmt="o", ms=3)
ax.set_xticks(np.arange(len(rows_)), [f"{r['layer']}.{r['head']}" for r in rows_], rotation=90, fontsize=6)
ax.axhline(0, color="0.8", lw=1)
ax.set_ylabel("mean θ (95% bootstrap interval)"), ax.set_title("θ per head, largest first", fontsize=9)
fig.tight_layout()
report.figure(fig, "using_heads", ITEM)

# %% [markdown]
# ## Examples of changed answers, and the numbers

# %%
k_max = max(ks)
hear_column = 1 + sets.index(top_set)
random_column = 1 + next(i for i, s in enumerate(sets) if s["criterion"] == "Random" and s["k"] == k_max)
examples = pd.DataFrame([{"sample": r.meta["sample"], "answer": r.meta["answer"], "unablated": t[0],
                          f"top {k_max} HeAr ablated": t[hear_column], f"{k_max} random ablated": t[random_column]}
                         for r, t in zip(records, texts) if t[hear_column] != t[0]][:p.n_examples])
stable = heads_doc["stability"]
halves = stable["halves"]
curve = stable["by_n_samples"]
report.table(ablation, "using_heads_ablation", ITEM,
             f"Accuracy under ablation of k heads during generation, {len(records)} samples the sets were not "
             f"found on (unablated {base_correct.mean():.2f}); Random: mean over {p.random_sets} sets.")
report.table(scaling, "using_heads_scaling", ITEM, f"The top {scale_k} HeAr heads' image attention scaled by s.")
if len(examples):
    report.table(examples, "using_heads_examples", ITEM, f"Answers changed by ablating the top {k_max} HeAr heads.")
report.section(ITEM, "Ablating and scaling head sets while the model generates "
               "(`notebooks/12_using_heads.py`):\n\n" + markdown_table(ablation) + "\n" + markdown_table(scaling)
               + "\nStability of the set: x* Jaccard between halves "
               + (f"{halves['mean']:.2f} ({halves['min']:.2f}–{halves['max']:.2f})" if halves else "n/a")
               + "; x* Jaccard of n samples to all: "
               + ", ".join(f"{n}: {j:.2f}" for n, j in zip(curve["n"], curve["x_star_jaccard"]) if j is not None))
examples

# %%
per_k = {k: {c: float(ablation[(ablation.k == k) & (ablation.criterion == c)].accuracy.iloc[0])
             for c in ("HeAr", "Attention", "Random")} for k in ks}
lower = [k for k, a in per_k.items() if a["HeAr"] < a["Random"] and a["HeAr"] < a["Attention"]]
report.headline(ITEM, f"accuracy with the top-k HeAr / k attention / k random heads ablated during generation "
                f"(unablated {base_correct.mean():.2f})",
                "; ".join(f"k={k}: {a['HeAr']:.2f} / {a['Attention']:.2f} / {a['Random']:.2f}"
                          for k, a in per_k.items()),
                BEYOND, verdict="beyond the paper",
                note="" if len(lower) == len(per_k) else
                f"measured: ablating the top-k HeAr heads lowers accuracy more than both k random and k "
                f"attention-chosen heads only for k in {lower or 'none'} of {list(per_k)}")
report.headline(ITEM, "x* Jaccard between disjoint halves of the samples (mean, min–max)",
                f"{halves['mean']:.2f} ({halves['min']:.2f}–{halves['max']:.2f})" if halves else "n/a", BEYOND,
                verdict="beyond the paper")
nb.finish();
