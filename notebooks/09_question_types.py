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
# # 09 · Attribution per question type (beyond the paper)
#
# The paper asks one question, "what is the main object". The organism also answers colour,
# position and kind questions about the same image (docs/ORGANISM.md). Do the same heads carry
# the object's identity, its colour and its position, or different ones? HeAr θ for the same
# samples (the first `n_question_samples` the model answers correctly under *every* question
# type) under each type, with the answer word taken from the sample's labels
# (`hearlib.records.questions`): θ maps side by side, the cosine between types per sample, where in depth
# the attribution sits, and heads specific to one type. None of this is in the paper.
#
# On COCO only the object question applies (no colour or position labels); give others with
# the parameter `questions` (name → {prompt, answer field}), e.g.
# `{"kind": {"prompt": "...", "answer": "supercategory"}}`.

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
from hearlib.paper.report import fmt_pm
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("09_question_types", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

BEYOND = "— (beyond the paper)"
ITEM = "Question types (beyond the paper)"
types = st.questions(p.questions)
nb.record_settings(question_types=list(types))
items = st.samples(p.n_question_samples, correct_only=p.correct_only, questions=types.values())
attrs = {name: st.many("attribution", items, desc=f"{name} question", prompt=q.prompt, answer=q.answer, **settings)
         for name, q in types.items()}
thetas = {name: stack(recs, "theta") for name, recs in attrs.items()}
first = next(iter(attrs.values()))[0]
L, H = first["n_layers"], first["n_heads"]
names = list(types)
print(st, f"{len(items)} samples answered correctly under every type; N = {L}×{H}; types: {', '.join(names)}")
if len(types) < 2:
    print(f"Only the object question applies to {st.dataset_id}: its samples carry no colour/position labels "
          "(COCO). Give other questions with the parameter `questions`; the comparisons below need two types.")

# %% [markdown]
# ## The questions, their answers and the fit per type

# %%
rows = []
for name, q in types.items():
    recs = attrs[name]
    r2, rho = np.array([r["r2"] for r in recs]), np.array([r["pearson"] for r in recs])
    # records from before question types carry no "answer": they answered the label
    answers = pd.Series([r.meta.get("answer", r.meta["label"]) for r in recs]).value_counts()
    rows.append({"type": name, "prompt": q.prompt, "answer field": q.answer,
                 "answers": ", ".join(f"{a} ×{c}" for a, c in answers.items()), "R2": fmt_pm(r2),
                 "Pearson": fmt_pm(rho), "R2_mean": r2.mean(), "Pearson_mean": rho.mean()})
fit_table = pd.DataFrame(rows)
report.table(fit_table, "q_fit_per_type", ITEM,
             "Per question type: prompt, answer field, answers of the samples, held-out R² / Pearson of HeAr (mean ± std).")

# %% [markdown]
# ## θ per question type (mean over the same samples)

# %%
means = {name: t.mean(axis=0) for name, t in thetas.items()}
bound = float(max(np.abs(m).max() for m in means.values())) or 1.0
fig = P.head_map_panels([m.reshape(L, H) for m in means.values()], [f"{n} question" for n in names],
                        cols=len(names), cmap="RdBu_r", vmin=-bound, vmax=bound, layers=[st.layer_rows()] * len(names),
                        label=f"mean {P.THETA_N} over {len(items)} samples", panel_size=(3.2, 2.9),
                        suptitle=f"{P.model_label(st.model)}: HeAr {P.THETA} per question type")
report.figure(fig, "q_theta_maps", ITEM)

# %% [markdown]
# ## Cosine of θ between question types, per sample
#
# For reference, the cosine between θ of *different* samples under the same (object) question:
# how alike two samples' head sets are when the question does not change.

# %%
sims = A.type_cosines(thetas)                         # [S, T, T]
obj = thetas[names[0]]
across = np.array([A.cosine_similarity(obj[i], obj[j]) for i in range(len(obj)) for j in range(i + 1, len(obj))])
pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw=dict(width_ratios=[1, 1.6]), layout="constrained")
mean_sims = np.nanmean(sims, axis=0)
im = a1.imshow(mean_sims, vmin=-1, vmax=1, cmap="RdBu_r")
a1.set_xticks(range(len(names)), names, rotation=30)
a1.set_yticks(range(len(names)), names)
for i in range(len(names)):
    for j in range(len(names)):
        a1.text(j, i, f"{mean_sims[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if abs(mean_sims[i, j]) > 0.6 else "black")
fig.colorbar(im, ax=a1, shrink=0.8, label="mean cosine over samples")
a1.set_title(f"cosine({P.THETA}, {P.THETA}) between types", fontsize=9)
boxes = [sims[:, i, j][np.isfinite(sims[:, i, j])] for i, j in pairs] + [across[np.isfinite(across)]]
labels = [f"{names[i]}–{names[j]}" for i, j in pairs] + [f"{names[0]}: other\nsamples"]
if pairs:
    a2.boxplot(boxes, showmeans=True)
    a2.set_xticks(range(1, len(labels) + 1), labels, rotation=30, fontsize=8)
    a2.axhline(0, color="0.6", lw=0.8)
    a2.set_ylabel("cosine per sample (pair)")
    a2.set_title("same sample, two question types; right: one type, two samples", fontsize=9)
else:
    a2.axis("off")
report.figure(fig, "q_cosine_between_types", ITEM)
cos_rows = [{"pair": f"{names[i]}–{names[j]}", "cosine": fmt_pm(sims[:, i, j]), "mean": float(np.nanmean(sims[:, i, j]))}
            for i, j in pairs] + [{"pair": f"{names[0]}, two samples", "cosine": fmt_pm(across),
                                   "mean": float(np.nanmean(across)) if across.size else float("nan")}]
cos_table = pd.DataFrame(cos_rows)
report.table(cos_table, "q_cosine_between_types", ITEM,
             "Cosine of θ between question types for the same sample (mean ± std over samples), and between "
             "two samples under the object question.")
cos_table[["pair", "cosine"]]

# %% [markdown]
# ## Where in depth: share of the positive θ in each layer, per type

# %%
share = {name: np.nanmean(A.layer_share(t, L, H), axis=0) for name, t in thetas.items()}
fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
for name, s in share.items():
    ax.plot(range(L), s, "o-", label=name)
ax.set_xticks(range(L))
ax.set_xlabel("layer")
ax.set_ylabel(f"share of positive {P.THETA}")
ax.set_title(f"{P.model_label(st.model)}: layer distribution of {P.THETA} per question type", fontsize=9)
ax.legend(fontsize=8)
report.figure(fig, "q_layer_distribution", ITEM)
peaks = {name: int(np.nanargmax(s)) for name, s in share.items()}

# %% [markdown]
# ## Heads specific to one question type
#
# A head is specific to a type when it is among that type's top `top_k` heads by mean θ and in
# no other type's top `top_k`. The bars show the mean θ of every head in some type's top `top_k`.

# %%
specific = A.specific_heads(means, p.top_k)
union = sorted({int(n) for m in means.values() for n in EF.ranking(m)[:p.top_k]}, key=lambda n: -max(m[n] for m in means.values()))
fig, ax = plt.subplots(figsize=(min(12.0, max(5.0, 0.8 * len(union) + 1.5)), 3.4), layout="constrained")
colors = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
P.grouped_bars(ax, [A.head_name(n, H) + ("*" if any(n in s for s in specific.values()) else "") for n in union],
               {name: [means[name][n] for n in union] for name in names}, colors,
               ylabel=f"mean {P.THETA_N}", title=f"top-{p.top_k} heads of each type (* specific to one type)")
ax.axhline(0, color="0.6", lw=0.8)
ax.legend(fontsize=8)
report.figure(fig, "q_specific_heads", ITEM)
spec_rows = [{"type": name, "top heads": " ".join(A.head_name(int(n), H) for n in EF.ranking(means[name])[:p.top_k]),
              "specific": " ".join(A.head_name(int(n), H) for n in specific[name]) or "none"} for name in names]
spec_table = pd.DataFrame(spec_rows)
report.table(spec_table, "q_specific_heads", ITEM,
             f"Top-{p.top_k} heads by mean θ per question type, and those in no other type's top {p.top_k}.")
spec_table

# %%
if pairs:
    vs_object = ", ".join(f"{names[j]} {np.nanmean(sims[:, 0, j]):.2f}" for j in range(1, len(names)))
    ref = float(np.nanmean(across)) if across.size else float("nan")
    report.headline(ITEM, "cosine of θ between the object question and each other question type, "
                    "same samples (mean over samples)", f"{vs_object} (object, two samples: {ref:.2f})", BEYOND,
                    verdict="beyond the paper")
    n_spec = sum(len(s) for s in specific.values())
    report.headline(ITEM, f"heads in one type's top {p.top_k} by mean θ and no other's",
                    "; ".join(f"{name}: {' '.join(A.head_name(int(n), H) for n in specific[name]) or 'none'}"
                              for name in names) + f" ({n_spec} in all)", BEYOND, verdict="beyond the paper")
    report.headline(ITEM, "layer with the largest share of positive θ, per question type",
                    ", ".join(f"{name} {peaks[name]}" for name in names) + f" (of {L})", BEYOND,
                    verdict="beyond the paper")
else:
    report.headline(ITEM, "question types compared", f"object only ({st.dataset_id} has no other labels)",
                    BEYOND, "Give other questions with the parameter `questions`.", verdict="beyond the paper")
nb.finish();
