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
# # 02 · Head attribution (Fig. 2, Table 2, Fig. 3C/12, Fig. 3D/14, Fig. 8)
#
# HeAr (METHOD.md, "Head attribution"): M masks ablating p = 75% of the heads, π for each, the
# ElasticNet θ, held-out R² and Pearson. Then where the important heads are (x*, Fig. 3C/12),
# whether θ follows the image attention weight (Eq. 10; Fig. 3D/14), and what the top heads
# write (logit lens, Fig. 8).

# %% tags=["parameters"]
model = "data/models/hear-organism-s"
models = ["data/models/hear-organism-s", "data/models/hear-organism-m", "data/models/hear-organism-l"]
data = "data/scenes/heldout"
n_samples = 40
n_size_samples = 20                         # samples per model for Table 2 / Fig. 12 / Fig. 14
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
n_lens_samples = 2                          # samples shown in the logit lens (Fig. 8)

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib import analysis as A
from hearlib.attribution import train_test_indices
from hearlib.report import Report, fmt_pm, head_grid
from hearlib.study import Study, stack

common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device)
st = Study(model, data, **common)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed)
report = Report("02_head_attribution", out, dict(profile=profile, model=st.model_id, data=st.dataset_id,
                                                 n_samples=n_samples, n_size_samples=n_size_samples,
                                                 R=n_mean_images, **settings))
items = st.samples(n_samples, correct_only=correct_only)
attrs = st.many("attribution", items, **settings)
valid = st.many("validation", items, **settings)
L, H = attrs[0]["n_layers"], attrs[0]["n_heads"]
thetas = stack(attrs, "theta")
print(st, f"{len(items)} samples, N = {L}×{H}")

# %% [markdown]
# ## Fig. 2 — one sample: π against π̂ on held-out masks, and θ per head

# %%
ex = attrs[0]
_, test = train_test_indices(len(ex["pi"]), seed)
pred = ex["masks"][test].astype(float) @ ex["theta"] + ex["intercept"]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw=dict(width_ratios=[1, 1.3]))
a1.scatter(ex["pi"][test], pred, s=6, alpha=0.5)
lim = [min(ex["pi"][test].min(), pred.min()), max(ex["pi"][test].max(), pred.max())]
a1.plot(lim, lim, "k--", lw=0.8)
a1.set_xlabel("π(x) (ground truth)")
a1.set_ylabel("π̂(x) = θ·x + b")
a1.set_title(f"{items[0].label}: R² {ex['r2']:.2f}, ρ {ex['pearson']:.2f} (held-out)")
im = a2.imshow(ex["theta"].reshape(L, H), cmap="RdBu_r", vmin=-abs(ex["theta"]).max(), vmax=abs(ex["theta"]).max(),
               aspect="auto")
head_grid(a2)
a2.set_title("attribution coefficients θ")
fig.colorbar(im, ax=a2)
report.figure(fig, "fig2_attribution_example", "Fig. 2")

# %% [markdown]
# ## Table 2 — held-out R² and Pearson, mean ± std over samples, per model

# %%
def model_study(m):
    return st if str(m) == str(model) else Study(m, data, **common)


size_rows, per_model = [], {}
for m in models:
    sm = model_study(m)
    its = items[:n_size_samples] if sm is st else sm.samples(n_size_samples, correct_only=correct_only)
    at = sm.many("attribution", its, **settings)
    va = sm.many("validation", its, **settings)
    per_model[m] = (sm, its, at, va)
    r2 = np.array([a["r2"] for a in at])
    rho = np.array([a["pearson"] for a in at])
    size_rows.append({"model": sm.model_id, "heads": at[0]["n_layers"] * at[0]["n_heads"], "samples": len(at),
                      "R2": fmt_pm(r2), "Pearson": fmt_pm(rho), "R2_mean": r2.mean(), "Pearson_mean": rho.mean(),
                      "R2_min": r2.min(), "Pearson_min": rho.min()})
table2 = pd.DataFrame(size_rows)
report.table(table2, "table2_attribution_fit", "Table 2",
             "Held-out (20%) explained variance R² and Pearson ρ between π(x) and π̂(x), mean ± std over samples.")
table2

# %%
ok = bool((table2.R2_mean >= 0.7).all() and (table2.Pearson_mean >= 0.85).all())
main_row = table2.iloc[[i for i, m in enumerate(models) if str(m) == str(model)] or [0]].iloc[0]
# held-out R² of the fit on the first m masks (stored with every record): does more M help?
counts = per_model[models[0]][2][0]["r2_counts"]
curves = {per_model[m][0].model_id: np.mean([a["r2_curve"] for a in per_model[m][2]], axis=0) for m in models}
r2_vs_m = pd.DataFrame({"masks": counts, **curves})
report.table(r2_vs_m, "table2_r2_by_mask_count", "Table 2",
             "Mean held-out R² of the fit on the first m masks of each sample, per model.")
print(r2_vs_m.round(3).to_string(index=False))
half = {mid: float(c[np.searchsorted(counts, counts[-1] // 2)]) for mid, c in curves.items()}
note = "" if ok else (
    "The organism's linear fit is weaker than the paper's on at least one size (mean R² < 0.7 or ρ < 0.85). "
    "More masks help little: doubling M from half to all moved R² from "
    + ", ".join(f"{v:.2f}" for v in half.values()) + " to "
    + ", ".join(f"{c[-1]:.2f}" for c in curves.values())
    + " (per size, small to large), so most of the gap is non-linear interaction between the organism's "
    "heads, which are few and each carry a larger share of the flow than LLaVA-1.5-7B's.")
report.headline("Table 2", "R² / Pearson (held-out)", f"{main_row.R2} / {main_row.Pearson}",
                "0.82 ± 0.05 / 0.91 ± 0.03 (range over ten models: R² 0.77–0.92, ρ 0.88–0.96)", note)
print("R² ≥ 0.7 and ρ ≥ 0.85 for every size:", ok)

# %% [markdown]
# ## Fig. 3C / Fig. 12 — share of samples whose x* contains each head

# %%
def head_map(ax, dist, title):
    im = ax.imshow(dist, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    head_grid(ax)
    ax.set_title(title, fontsize=9)
    return im


dist = A.head_distribution(stack(valid, "x_star"), L, H)
fig, ax = plt.subplots(figsize=(4.5, 3.6))
fig.colorbar(head_map(ax, dist, f"{st.model_id}: share of samples needing the head"), ax=ax)
report.figure(fig, "fig3c_head_distribution", "Fig. 3C")

fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.4), squeeze=False)
for ax, m in zip(axes[0], models):
    sm, its, at, va = per_model[m]
    im = head_map(ax, A.head_distribution(stack(va, "x_star"), at[0]["n_layers"], at[0]["n_heads"]), sm.model_id)
fig.colorbar(im, ax=axes, shrink=0.8)
report.figure(fig, "fig12_head_distribution_models", "Fig. 12")

depth_share = dist.mean(axis=1)
layer_peak = int(np.argmax(depth_share))
note = "" if layer_peak >= L // 3 else ("The organism's important heads sit in its early layers, "
                                         "unlike the paper's middle-to-late layers.")
report.headline("Fig. 3C", "layer with the most x* heads (relative depth)", f"{layer_peak} ({layer_peak / max(1, L - 1):.2f})",
                "middle-to-late layers", note)

# %% [markdown]
# ## Fig. 3D / Fig. 14 — θ against the image attention weight (Eq. 10), coloured by depth

# %%
def scatter(ax, at, title):
    th = stack(at, "theta")
    att = stack(at, "image_attention").reshape(len(at), -1)
    depth = np.broadcast_to(A.relative_depth(at[0]["n_layers"], at[0]["n_heads"]), th.shape)
    sc = ax.scatter(att.ravel(), th.ravel(), c=depth.ravel(), cmap="viridis", s=5, alpha=0.6)
    rho = A.pearson(att.ravel(), th.ravel())
    ax.set_xlabel("image attention weight")
    ax.set_ylabel("θ")
    ax.set_title(f"{title}: ρ = {rho:.2f}", fontsize=9)
    return sc, rho


fig, ax = plt.subplots(figsize=(4.5, 3.6))
sc, rho_att = scatter(ax, attrs, st.model_id)
fig.colorbar(sc, ax=ax, label="relative depth l/(L−1)")
report.figure(fig, "fig3d_attention_scatter", "Fig. 3D")

fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.4), squeeze=False)
for ax, m in zip(axes[0], models):
    sc, _ = scatter(ax, per_model[m][2], per_model[m][0].model_id)
fig.colorbar(sc, ax=axes, shrink=0.8, label="relative depth")
report.figure(fig, "fig14_attention_scatter_models", "Fig. 14")
note = "" if abs(rho_att) < 0.3 else (f"The organism shows a clearer correlation (ρ = {rho_att:.2f}) between θ "
                                       "and attention weight than the paper's 'no significant correlation'.")
report.headline("Fig. 3D", "Pearson(θ_n, image attention weight)", f"{rho_att:.2f}", "no significant correlation", note)

# %% [markdown]
# ## Fig. 8 — logit lens of the top-5 heads by θ

# %%
rows = []
for it, at in list(zip(items, attrs))[:n_lens_samples]:
    for rank, n in enumerate(A.ranking(at["theta"])[:5], start=1):
        lens = st.logit_lens(it, int(n), k=10)
        rows.append({"sample": it.image_id, "answer": it.label, "rank": rank, "head": f"L{n // H}H{n % H}",
                     "theta": float(at["theta"][n]), "top10": " ".join(t for t, _ in lens),
                     "answer_in_top10": it.label in [t.strip("▁Ġ ").lower() for t, _ in lens]})
lens_table = pd.DataFrame(rows)
report.table(lens_table, "fig8_logit_lens", "Fig. 8", "Top-10 tokens of each top-5 head's output (logit lens).")

fig, ax = plt.subplots(figsize=(11, 0.35 * len(rows) + 0.8))
ax.axis("off")
tab = ax.table(cellText=[[r["answer"], r["rank"], r["head"], f"{r['theta']:.3f}", r["top10"]] for r in rows],
               colLabels=["answer", "rank", "head", "θ", "top-10 tokens (logit lens)"], loc="center", cellLoc="left")
tab.auto_set_font_size(False)
tab.set_fontsize(7)
tab.auto_set_column_width(list(range(5)))
report.figure(fig, "fig8_logit_lens", "Fig. 8")
hit = lens_table.answer_in_top10.mean() if len(lens_table) else float("nan")
report.headline("Fig. 8", "top-5 heads whose logit lens shows the answer", f"{hit:.0%}",
                "some heads clearly answer-related, others background or uninterpretable")
report.write_readme();
