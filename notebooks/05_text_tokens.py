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
# # 05 · Which text tokens receive the image information? (Fig. 4A/15, Table 3)
#
# With the heads fixed to x* (the HeAr-minimal set reaching faithfulness > 0.8), block image
# access for one text query at a time: Δ_i = 1 − π(x*, u_¬i) / π(x*). Tokens with Δ_i > 0.05 form
# u*; Table 3 reports π(x*, u*) / π(x*). The paper: only the role tokens (`ASSISTANT`) and the
# final `:` matter, and keeping them alone preserves 0.98 ± 0.02 of the logit (LLaVA-1.5-7B).

# %% tags=["parameters"]
model = "data/models/hear-organism-s"
models = ["data/models/hear-organism-s", "data/models/hear-organism-m", "data/models/hear-organism-l"]
data = "data/scenes/heldout"
n_samples = 40
n_size_samples = 20
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
threshold = 0.8                             # x*: faithfulness > threshold
token_threshold = 0.05                      # u*: Δ_i > token_threshold

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.report import Report, fmt_pm
from hearlib.study import Study, stack

common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device)
st = Study(model, data, **common)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed, threshold=threshold, token_threshold=token_threshold)
report = Report("05_text_tokens", out, dict(profile=profile, model=st.model_id, data=st.dataset_id,
                                            n_samples=n_samples, n_size_samples=n_size_samples,
                                            R=n_mean_images, **settings))
items = st.samples(n_samples, correct_only=correct_only)
texts = st.many("text", items, **settings)
tokens = list(texts[0]["text_tokens"])
delta = stack(texts, "delta_text")                 # [S, P_txt] (same prompt: same tokens)
print(st, f"{len(items)} samples, text tokens: {tokens}")

# %% [markdown]
# ## Fig. 4A — Δ_i per text token (mean ± std over samples)

# %%
def token_bars(ax, delta, tokens, title):
    mean, std = delta.mean(axis=0), delta.std(axis=0)
    colors = ["tab:red" if m > token_threshold else "tab:gray" for m in mean]
    ax.bar(range(len(tokens)), mean, yerr=std, color=colors, capsize=2)
    ax.axhline(token_threshold, color="k", lw=0.7, ls="--")
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(tokens, rotation=70, fontsize=7)
    ax.set_ylabel("Δ_i = 1 − π(x*, u¬i)/π(x*)")
    ax.set_title(title, fontsize=9)


fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(tokens)), 3.4))
token_bars(ax, delta, tokens, f"{st.model_id}: blocking one text token under x*")
report.figure(fig, "fig4a_text_tokens", "Fig. 4A")
per_token = pd.DataFrame({"position": range(len(tokens)), "token": tokens, "delta_mean": delta.mean(0),
                          "delta_std": delta.std(0), "share_in_u_star": stack(texts, "u_star").mean(0)})
report.table(per_token, "fig4a_text_tokens", "Fig. 4A")
per_token

# %%
important = [t for t, m in zip(tokens, delta.mean(0)) if m > token_threshold]
role_like = {"ASSISTANT", ":", "▁ASSISTANT", "ĠASSISTANT"}
last_three = set(range(len(tokens) - 3, len(tokens)))
tail = all(i in last_three or tokens[i] in role_like for i, m in enumerate(delta.mean(0)) if m > token_threshold)
report.headline("Fig. 4A", "tokens with mean Δ_i > 0.05", " ".join(important) or "(none)",
                "the role tokens (ASSISTANT) and the final ':' only",
                "" if tail and important else
                "On the organism, tokens other than the role tokens and the final ':' also receive image information."
                if important else "On the organism no single text token has Δ_i > 0.05 on average.")

# %% [markdown]
# ## Table 3 and Fig. 15 — π(x*, u*) / π(x*) for every model

# %%
rows = []
fig, axes = plt.subplots(len(models), 1, figsize=(max(6, 0.4 * len(tokens)), 3.0 * len(models)), squeeze=False)
for ax, m in zip(axes[:, 0], models):
    sm = st if str(m) == str(model) else Study(m, data, **common)
    its = items[:n_size_samples] if sm is st else sm.samples(n_size_samples, correct_only=correct_only)
    tx = texts[:n_size_samples] if sm is st else sm.many("text", its, **settings)
    token_bars(ax, stack(tx, "delta_text"), list(tx[0]["text_tokens"]), sm.model_id)
    ratio_ = np.array([t["ratio"] for t in tx])
    rows.append({"model": sm.model_id, "samples": len(tx), "logit relative to π(x*)": fmt_pm(ratio_),
                 "mean": ratio_.mean(), "tokens kept (mean)": stack(tx, "u_star").sum(1).mean()})
fig.tight_layout()
report.figure(fig, "fig15_text_tokens_models", "Fig. 15")
table3 = pd.DataFrame(rows)
report.table(table3, "table3_text_token_ratio", "Table 3",
             "π(x*, u*, 1) / π(x*) when only the text tokens with Δ_i > 0.05 keep image access; mean ± std.")
ratios = np.array([t["ratio"] for t in texts])
report.headline("Table 3", "π(x*, u*)/π(x*)", fmt_pm(ratios), "0.98 ± 0.02 (LLaVA-1.5-7B; 0.82–0.99 over ten models)",
                "" if ratios.mean() >= 0.8 else
                "On the organism the selected tokens preserve less of the logit: the flow is spread over more text tokens.")
table3

# %%
report.write_readme()
