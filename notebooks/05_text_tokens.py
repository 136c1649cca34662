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
# # 05 · Which text tokens receive the image information? (Fig. 4A/15, Table 3)
#
# With the heads fixed to x* (the HeAr-minimal set reaching faithfulness > 0.8), block image
# access for one text query at a time: Δ_i = 1 − π(x*, u_¬i) / π(x*). Tokens with Δ_i > 0.05 form
# u*; Table 3 reports π(x*, u*) / π(x*). The paper: only the role tokens (`ASSISTANT`) and the
# final `:` matter, and keeping them alone preserves 0.98 ± 0.02 of the logit (LLaVA-1.5-7B).

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

nb = open_notebook("05_text_tokens", profile, **overrides)
p, st, report = nb.params, nb.study, nb.report
settings = dict(nb.settings, threshold=p.threshold, token_threshold=p.token_threshold)   # x*: faithfulness > threshold; u*: Δ_i > token_threshold

items = st.samples(p.n_samples, correct_only=p.correct_only)
texts = st.many("text", items, **settings)
tokens = list(texts[0]["text_tokens"])
delta = stack(texts, "delta_text")                 # [S, P_txt] (same prompt: same tokens)
print(st, f"{len(items)} samples, text tokens: {tokens}")

# %% [markdown]
# ## Fig. 4A — Only the role tokens and the final ':' read the image
#
# Δ_i per text token under x* (mean ± std over samples).

# %%
fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(tokens)), 3.4))
P.token_bars(ax, delta, tokens, f"{P.model_label(st.model)}: blocking one text token's image access under $x^*$",
             p.token_threshold)
report.figure(fig, "fig4a_text_tokens", "Fig. 4A")
per_token = pd.DataFrame({"position": range(len(tokens)), "token": tokens, "delta_mean": delta.mean(0),
                          "delta_std": delta.std(0), "share_in_u_star": stack(texts, "u_star").mean(0)})
report.table(per_token, "fig4a_text_tokens", "Fig. 4A")

# %%
important = A.important_tokens(delta, p.token_threshold)        # positions, by the mean over samples
role_and_final = A.only_role_and_final(tokens, important)
report.headline("Fig. 4A", f"text tokens whose blocked image access costs more than {p.token_threshold:.0%} of the logit "
                f"(mean Δ_i > {p.token_threshold})", A.describe_tokens(tokens, important),
                "the role tokens (ASSISTANT) and the final ':' only",
                verdict="agrees" if role_and_final else "weaker" if len(important) else "disagrees",
                note="" if role_and_final else
                "On the organism, tokens other than the role tokens and the final ':' also receive image information."
                if len(important) else f"On the organism no single text token has Δ_i > {p.token_threshold} on average.")

# %% [markdown]
# ## Table 3 / Fig. 15 — Image access for those few tokens alone keeps the logit: π(x*, u*) / π(x*) = 0.98
#
# π(x*, u*) / π(x*) for every model.

# %%
rows = []
fig, axes = plt.subplots(len(p.models), 1, figsize=(max(6, 0.4 * len(tokens)), 3.0 * len(p.models)), squeeze=False)
for ax, m in zip(axes[:, 0], p.models):
    sm = nb.study_of(m)
    its = items[:p.n_size_samples] if sm is st else sm.samples(p.n_size_samples, correct_only=p.correct_only)
    tx = texts[:p.n_size_samples] if sm is st else sm.many("text", its, **settings)
    P.token_bars(ax, stack(tx, "delta_text"), list(tx[0]["text_tokens"]), P.model_label(sm.model), p.token_threshold)
    ratio_ = np.array([t["ratio"] for t in tx])
    rows.append({"model": P.model_label(sm.model), "samples": len(tx), "logit relative to π(x*)": fmt_pm(ratio_),
                 "mean": ratio_.mean(), "tokens kept (mean)": stack(tx, "u_star").sum(1).mean()})
fig.tight_layout()
report.figure(fig, "fig15_text_tokens_models", "Fig. 15")
table3 = pd.DataFrame(rows)
report.table(table3, "table3_text_token_ratio", "Table 3",
             "π(x*, u*, 1) / π(x*) when only the text tokens with Δ_i > 0.05 keep image access; mean ± std.")
ratios = np.array([t["ratio"] for t in texts])
report.headline("Table 3", "share of the logit kept when only u* (each sample's text tokens with "
                f"Δ_i > {p.token_threshold}) keep image access: π(x*, u*)/π(x*)",
                fmt_pm(ratios), "0.98 ± 0.02 (LLaVA-1.5-7B; 0.82–0.99 over ten models)",
                verdict="agrees" if ratios.mean() >= 0.9 else "weaker" if ratios.mean() >= 0.8 else "disagrees",
                note="" if ratios.mean() >= 0.8 else
                "On the organism the selected tokens preserve less of the logit: the flow is spread over more text tokens.")
nb.finish()
