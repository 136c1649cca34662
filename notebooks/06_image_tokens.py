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
model = "data/models/hear-organism-s"
models = ["data/models/hear-organism-s", "data/models/hear-organism-m", "data/models/hear-organism-r8-tuned"]
data = "data/scenes/study-400"
n_samples = 40
n_image_samples = 12                        # samples with image-token attribution (paper: 50)
n_masks = 1000
n_image_masks = 2000                        # M image-token masks (paper: 10,000)
image_ratio = 0.75
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
threshold = 0.8
token_threshold = 0.05
n_show = 4                                  # rows of Fig. 4B
n_more = 6                                  # rows of Fig. 16/17

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.method.attribution import pearson
from hearlib.paper import plotting as P
from hearlib.paper.report import Report, fmt_pm
from hearlib.paper.study import Study, stack

common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device,
              profile=profile)
st = Study(model, data, **common)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed, threshold=threshold, token_threshold=token_threshold,
                n_image_masks=n_image_masks, image_ratio=image_ratio)
report = Report("06_image_tokens", out, dict(profile=profile, model=P.model_label(st.model), model_id=st.model_id,
                                             data=st.dataset_id, n_image_samples=n_image_samples, R=n_mean_images,
                                             **settings))
items = st.samples(n_image_samples, correct_only=correct_only)
imgs = st.many("image", items, **settings)
print(st, f"{len(items)} samples, grid {imgs[0]['grid']}")

# %% [markdown]
# ## Fig. 4B — image, θ^img, weighted attention w

# %%
report.figure(P.image_token_maps([it.path for it in items], [it.label for it in items], imgs, n_show,
                                 P.model_label(st.model)), "fig4b_image_tokens", "Fig. 4B")
more = items[n_show:]
report.figure(P.image_token_maps([it.path for it in more], [it.label for it in more], imgs[n_show:], n_more,
                                 f"{P.model_label(st.model)}: more samples"), "fig16_image_tokens_more", "Fig. 16")
if len(models) > 1:
    other = next((m for m in models if str(m) != str(model)), models[0])
    so = Study(other, data, **common)
    its_o = so.samples(min(n_more, n_image_samples), correct_only=correct_only)
    report.figure(P.image_token_maps([it.path for it in its_o], [it.label for it in its_o],
                                     so.many("image", its_o, **settings), n_more, P.model_label(so.model)),
                  "fig17_image_tokens_other_model", "Fig. 17")

# %% [markdown]
# ## Fig. 4C — θ^img against w, all tokens of all samples

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
                "" if abs(rho_pooled - 0.70) < 0.2 else
                ("On the organism the weighted attention predicts token importance "
                 + ("better" if rho_pooled > 0.7 else "worse") + " than in LLaVA-1.5-7B."))
report.headline("Fig. 4B", "held-out R² of the image-token fit θ^img (mean ± std over samples)",
                fmt_pm([e["r2"] for e in imgs]),
                "sparse θ^img on the object and some background tokens (qualitative)")
report.write_readme()
