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
# # 06 · Which image tokens carry the information? (Fig. 4B/16/17, Fig. 4C)
#
# With x = x* and u = u*, ablate 75% of the image tokens M times and fit the same ElasticNet from v
# to π(x*, u*, v): θ^img per image token, drawn on the image grid. Beside it, the weighted image
# attention of Eq. 13, w = Σ_n x*_n θ_n Σ_i u*_i Δ_i A^n_i[image]. The paper finds θ^img sparse,
# on the object and on some background tokens, and Pearson(θ^img, w) = 0.70 for LLaVA-1.5-7B.

# %% tags=["parameters"]
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.method.attribution import pearson
from hearlib.paper import plotting as P
from hearlib.paper.report import fmt_pm
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("06_image_tokens", profile, **overrides)
p, st, report = nb.params, nb.study, nb.report
settings = dict(nb.settings, threshold=p.threshold, token_threshold=p.token_threshold, n_image_masks=p.n_image_masks,
                image_ratio=p.image_ratio)

items = st.samples(p.n_image_samples, correct_only=p.correct_only)
imgs = st.many("image", items, **settings)
print(st, f"{len(items)} samples, grid {imgs[0]['grid']}")

# %% [markdown]
# ## Fig. 4B / Fig. 16 / Fig. 17 — A few image tokens carry the information: θ^img is sparse, on the object and some background
#
# Each image, its θ^img and the weighted attention w; more samples, and another model.

# %%
report.figure(P.image_token_maps([it.path for it in items], [it.label for it in items], imgs, p.n_show,
                                 P.model_label(st.model)), "fig4b_image_tokens", "Fig. 4B")
more = items[p.n_show:]
report.figure(P.image_token_maps([it.path for it in more], [it.label for it in more], imgs[p.n_show:], p.n_more,
                                 f"{P.model_label(st.model)}: more samples"), "fig16_image_tokens_more", "Fig. 16")
if len(p.models) > 1:
    other = next((m for m in p.models if str(m) != str(p.model)), p.models[0])
    so = nb.study_of(other)
    its_o = so.samples(min(p.n_more, p.n_image_samples), correct_only=p.correct_only)
    report.figure(P.image_token_maps([it.path for it in its_o], [it.label for it in its_o],
                                     so.many("image", its_o, **settings), p.n_more, P.model_label(so.model)),
                  "fig17_image_tokens_other_model", "Fig. 17")
concentration = np.mean([A.top_share(t, 0.1) for t in stack(imgs, "theta_img")])
report.headline("Fig. 4B", "held-out R² of the image-token fit θ^img (mean ± std over samples) / share of the "
                "positive θ^img in the top 10% of tokens (mean)",
                f"{fmt_pm([e['r2'] for e in imgs])} / {concentration:.0%}",
                "sparse θ^img on the object and some background tokens (qualitative)",
                verdict="agrees" if concentration >= 0.5 else "weaker" if concentration >= 0.3 else "disagrees")

# %% [markdown]
# ## Fig. 4C — The attention-weighted value norm w (Eq. 13) follows θ^img: ρ = 0.70
#
# θ^img against w, all tokens of all samples.

# %%
theta_img = stack(imgs, "theta_img")
w = stack(imgs, "w")
rho_pooled = pearson(theta_img.ravel(), w.ravel())
rho_each = np.array([pearson(a, b) for a, b in zip(theta_img, w)])
fig, ax = plt.subplots(figsize=(4.5, 3.8))
ax.scatter(w.ravel(), theta_img.ravel(), s=4, alpha=0.35)
ax.set_xlabel(P.W_EQ13)
ax.set_ylabel(P.THETA_IMG)
ax.set_title(f"{P.model_label(st.model)}: $\\rho$ = {rho_pooled:.2f} (pooled over tokens and samples)", fontsize=9)
report.figure(fig, "fig4c_image_scatter", "Fig. 4C")
per_sample = pd.DataFrame({"sample": [it.image_id for it in items], "label": [it.label for it in items],
                           "fit_r2": [e["r2"] for e in imgs], "fit_pearson": [e["pearson"] for e in imgs],
                           "pearson_theta_w": rho_each,
                           "top10pct_tokens_share_of_theta": [A.top_share(t, 0.1) for t in theta_img]})
report.table(per_sample, "fig4c_image_tokens_per_sample", "Fig. 4C")
report.headline("Fig. 4C", "Pearson ρ between θ^img and the weighted attention w of Eq. 13, pooled "
                "(per sample mean ± std)",
                f"{rho_pooled:.2f} ({fmt_pm(rho_each)})", "0.70 (LLaVA-1.5-7B)",
                verdict="agrees" if rho_pooled >= 0.5 else "weaker" if rho_pooled >= 0.3 else "disagrees",
                note="" if abs(rho_pooled - 0.70) < 0.2 else
                ("On the organism the weighted attention predicts token importance "
                 + ("better" if rho_pooled > 0.7 else "worse") + " than in LLaVA-1.5-7B."))
nb.finish()
