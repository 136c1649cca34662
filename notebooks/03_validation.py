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
# # 03 · Validation (Fig. 3A/11, Fig. 3B, Fig. 5, Fig. 6)
#
# Rank heads by a criterion — HeAr (θ), Random, Attention (Eq. 10), Causal (single-head Δ) — and
# measure faithfulness (top k intact) and completeness (top k ablated) for k = 1..N. The fewer
# heads a criterion needs for faithfulness > 0.8 and completeness < 0.2, the better it explains
# the flow. A count of N + 1 means the threshold is never reached (`hearlib.method.effects.min_heads`).

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
from hearlib.paper.notebook import open_notebook

nb = open_notebook("03_validation", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

items = st.samples(p.n_samples, correct_only=p.correct_only)
valid = st.many("validation", items, **settings)
criteria = list(valid[0]["criteria"])
N = valid[0]["faithfulness"].shape[1]
print(st, f"{len(items)} samples, N = {N}, criteria {criteria}")

# %% [markdown]
# ## Fig. 3A — HeAr's ranking needs the fewest heads for faithfulness > 0.8 and completeness < 0.2
#
# The minimum number of top heads per criterion (random, attention, causal, HeAr).

# %%
kf, kc = A.min_heads_per_criterion(valid)                     # [S, C] each
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
P.min_heads_bars(axes, kf, kc, criteria, P.model_label(st.model), N)
report.figure(fig, "fig3a_min_heads", "Fig. 3A")
summary = pd.DataFrame({"criterion": criteria, "faithfulness>0.8 mean": kf.mean(0), "faithfulness>0.8 median": np.median(kf, 0),
                        "completeness<0.2 mean": kc.mean(0), "completeness<0.2 median": np.median(kc, 0)})
report.table(summary, "fig3a_min_heads", "Fig. 3A", f"Minimum number of heads (of N = {N}), over {len(items)} samples.")

# %%
hear = criteria.index("HeAr")
others = [i for i in range(len(criteria)) if i != hear]
fewer_f = all(kf[:, hear].mean() < kf[:, i].mean() for i in others)
fewer_c = all(kc[:, hear].mean() < kc[:, i].mean() for i in others)
value = (f"HeAr {kf[:, hear].mean():.1f} / {kc[:, hear].mean():.1f} heads; "
         + "; ".join(f"{criteria[i]} {kf[:, i].mean():.1f} / {kc[:, i].mean():.1f}" for i in others))
note = ""
if not (fewer_f and fewer_c):
    worse = [criteria[i] for i in others if kf[:, hear].mean() >= kf[:, i].mean() or kc[:, hear].mean() >= kc[:, i].mean()]
    note = (f"On the organism HeAr does not need strictly fewer heads than {', '.join(worse)} for both thresholds; "
            f"with only N = {N} heads the criteria often pick the same few heads.")
report.headline("Fig. 3A", "mean number of top heads each criterion needs for faithfulness > 0.8 / completeness < 0.2",
                value, "HeAr needs the fewest heads for both (LLaVA-1.5-7B)", note,
                verdict="agrees" if fewer_f and fewer_c else "weaker" if fewer_f or fewer_c else "disagrees")

# %% [markdown]
# ## Fig. 3B / Fig. 11 — Completeness needs many more heads than faithfulness, the more so in larger models
#
# Every model's minimum heads per criterion (Fig. 11), and HeAr's minimum against model size (Fig. 3B).

# %%
per_model = {}
for m in p.models:
    sm = nb.study_of(m)
    its = items[:p.n_size_samples] if sm is st else sm.samples(p.n_size_samples, correct_only=p.correct_only)
    per_model[m] = (sm, sm.many("validation", its, **settings))

fig, axes = plt.subplots(len(p.models), 2, figsize=(8, 3.0 * len(p.models)), squeeze=False)
trend, by_model = [], []
for row, m in zip(axes, p.models):
    sm, va = per_model[m]
    n_heads = va[0]["faithfulness"].shape[1]
    f, c = A.min_heads_per_criterion(va)
    P.min_heads_bars(row, f, c, criteria, P.model_label(sm.model), n_heads)
    trend.append({"model": P.model_label(sm.model), "heads": n_heads, "faithfulness>0.8": f[:, hear].mean(),
                  "completeness<0.2": c[:, hear].mean(), "faith_std": f[:, hear].std(), "comp_std": c[:, hear].std()})
    by_model += [{"model": P.model_label(sm.model), "heads": n_heads, "samples": len(va), "criterion": name,
                  "faithfulness>0.8 mean": f[:, i].mean(), "completeness<0.2 mean": c[:, i].mean()}
                 for i, name in enumerate(criteria)]
fig.tight_layout()
report.figure(fig, "fig11_min_heads_models", "Fig. 11")
by_model = pd.DataFrame(by_model)
report.table(by_model, "fig11_min_heads_models", "Fig. 11",
             "Minimum number of heads per criterion and model (mean over samples).")
hear_fewest = {mid: all(g.loc[g.criterion == "HeAr", col].iloc[0] < g.loc[g.criterion != "HeAr", col].min()
                        for col in ("faithfulness>0.8 mean", "completeness<0.2 mean"))
               for mid, g in by_model.groupby("model", sort=False)}
report.headline("Fig. 11", "models where HeAr needs strictly the fewest heads for both thresholds",
                f"{sum(hear_fewest.values())} of {len(hear_fewest)}", "all ten models",
                verdict="agrees" if all(hear_fewest.values()) else "weaker" if any(hear_fewest.values()) else "disagrees",
                note="" if all(hear_fewest.values()) else
                "On " + ", ".join(m for m, ok in hear_fewest.items() if not ok) + " another criterion needs as few "
                "heads as HeAr or fewer for at least one threshold.")
trend = pd.DataFrame(trend).sort_values("heads")
report.table(trend, "fig3b_size_trend", "Fig. 3B", "HeAr minimum heads (mean over samples) against model size.")

fig, ax = plt.subplots(figsize=(4.8, 3.4))
for key, color in (("faithfulness>0.8", "tab:red"), ("completeness<0.2", "tab:blue")):
    std = trend["faith_std" if key.startswith("faith") else "comp_std"]
    ax.errorbar(trend.heads, trend[key], yerr=std, marker="o", color=color, label=key, capsize=3)
ax.set_xscale("log", base=2)
ax.set_xlabel("number of heads $N$ (model size)")
ax.set_ylabel("minimum heads (HeAr)")
ax.legend()
ax.set_title("HeAr minimum heads against model size", fontsize=9)
report.figure(fig, "fig3b_size_trend", "Fig. 3B")
gap = (trend["completeness<0.2"] - trend["faithfulness>0.8"]).to_numpy()
grows = bool(len(gap) < 2 or np.all(np.diff(gap) > 0))
note = "" if grows and (gap > 0).all() else (
    "On the organisms the completeness−faithfulness gap does not grow monotonically with size "
    f"(gaps {np.round(gap, 1).tolist()} for N = {trend.heads.tolist()}).")
report.headline("Fig. 3B", "extra heads HeAr needs for completeness < 0.2 over faithfulness > 0.8, per model size",
                ", ".join(f"{m} (N = {h}): {g:.1f}" for m, h, g in zip(trend.model, trend.heads, gap)),
                "completeness needs many more heads, and more so in larger models", note,
                verdict="agrees" if grows and (gap > 0).all() else "weaker" if (gap > 0).all() else "disagrees")

# %% [markdown]
# ## Fig. 5 — HeAr needs the fewest heads at every threshold
#
# Faithfulness thresholds 0.5–0.9 and completeness thresholds 0.5–0.1.

# %%
fig, axes = plt.subplots(2, 1, figsize=(6, 6))
rows = []
for ci, name in enumerate(criteria):
    f = [np.mean([EF.min_heads(e["faithfulness"][ci], t, "faithfulness") for e in valid]) for t in p.faith_thresholds]
    c = [np.mean([EF.min_heads(e["completeness"][ci], t, "completeness") for e in valid]) for t in p.comp_thresholds]
    axes[0].plot(p.faith_thresholds, f, marker="o", color=P.criterion_color(name), label=name)
    axes[1].plot(p.comp_thresholds, c, marker="o", color=P.criterion_color(name), label=name)
    rows += [{"criterion": name, "kind": "faithfulness >", "threshold": t, "min_heads": v} for t, v in zip(p.faith_thresholds, f)]
    rows += [{"criterion": name, "kind": "completeness <", "threshold": t, "min_heads": v} for t, v in zip(p.comp_thresholds, c)]
axes[0].set_xlabel("faithfulness threshold")
axes[1].set_xlabel("completeness threshold")
axes[0].set_title(f"{P.model_label(st.model)}: minimum heads against the threshold", fontsize=9)
axes[1].invert_xaxis()
for ax in axes:
    ax.set_ylabel("minimum heads")
    ax.legend(fontsize=7)
fig.tight_layout()
report.figure(fig, "fig5_thresholds", "Fig. 5")
sweep = pd.DataFrame(rows)
report.table(sweep, "fig5_thresholds", "Fig. 5")
best = sweep.loc[sweep.groupby(["kind", "threshold"]).min_heads.idxmin()]
share_best = float((best.criterion == "HeAr").mean())
report.headline("Fig. 5", "share of thresholds at which HeAr needs the fewest heads (ties count)", f"{share_best:.0%}",
                "100% (HeAr fewest at every threshold)",
                verdict="agrees" if share_best == 1 else "weaker" if share_best >= 0.5 else "disagrees",
                note="" if share_best == 1 else "At some thresholds another criterion ties or wins on the organism.")

# %% [markdown]
# ## Fig. 6 — Ablating more than half of the heads per mask needs fewer heads, and the count is stable above 50%
#
# The ablation ratio p from 12.5% to 87.5% (HeAr only).

# %%
ratio_items = items[:p.n_ratio_samples]
rows = []
for share in p.ratios:
    va = st.many("validation", ratio_items, desc=f"p = {share}", n_masks=p.n_masks, ratio=share, seed=p.seed,
                 criteria=("HeAr",))
    for e in va:
        rows.append({"ratio": share, "faithfulness>0.8": EF.min_heads(e["faithfulness"][0], 0.8, "faithfulness"),
                     "completeness<0.2": EF.min_heads(e["completeness"][0], 0.2, "completeness")})
by_ratio = pd.DataFrame(rows).groupby("ratio").agg(["mean", "std"]).reset_index()
by_ratio.columns = [" ".join(c).strip() for c in by_ratio.columns]
report.table(by_ratio, "fig6_ablation_ratio", "Fig. 6")
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
for ax, key in zip(axes, ("faithfulness>0.8", "completeness<0.2")):
    ax.errorbar(by_ratio["ratio"], by_ratio[f"{key} mean"], yerr=by_ratio[f"{key} std"], marker="o", capsize=3)
    ax.set_xlabel("ablation ratio $p$")
    ax.set_ylabel("minimum heads (HeAr)")
    ax.set_title(f"{P.model_label(st.model)}: {key}", fontsize=9)
fig.tight_layout()
report.figure(fig, "fig6_ablation_ratio", "Fig. 6")
low = by_ratio[by_ratio.ratio <= 0.5]["faithfulness>0.8 mean"].mean()
high = by_ratio[by_ratio.ratio > 0.5]["faithfulness>0.8 mean"].mean()
report.headline("Fig. 6", "mean heads HeAr needs for faithfulness > 0.8, ablation ratio p ≤ 50% vs p > 50%",
                f"{low:.1f} vs {high:.1f} heads",
                "p > 50% needs fewer heads, stable across high ratios",
                verdict="agrees" if high <= low else "disagrees",
                note="" if high <= low else "On the organism, high ablation ratios do not need fewer heads.")
nb.finish()
