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
# # 12 · Using the heads (beyond the paper)
#
# **Draft (2026-12-06), not part of `make figures` or nbval yet:** it generates with the model while
# it renders, where every other notebook only reads records that `hearlib run` collected; it becomes a
# notebook when its interventions are a stage of the store (issue 28). Run it from `notebooks/` by hand.
#
# HeAr finds the heads that carry the image to the answer. This notebook *uses* them while the model
# generates (`engine.intervene`, `hearlib generate`): on samples the head set was not found on,
#
# - **ablate** the top-k heads by mean θ (the paper's mean ablation of their image keys/values for
#   every text query, generated tokens included), against k random heads and the k heads with the
#   largest image attention weight (Eq. 10): accuracy (the first generated token is the answer's) and
#   how many answers change;
# - **scale** the set's attention to the image down and up (multiplied by s and renormalised);
# - **examples** of changed answers;
# - **stability** of the set (docs/HEADS_FORMAT.md): bootstrap intervals of θ, the overlap of x*
#   between halves of the samples, and how the set changes with the number of samples.

# %% tags=["parameters"]
model = "data/models/hear-organism-s"      # the default organism
data = "data/scenes/study-400"
n_samples = 40                  # samples the head set comes from (attribution + validation, shared with 02/03)
n_eval = 24                     # held-out samples the interventions are measured on (the next ones)
ks = [1, 2, 4, 8]               # set sizes ablated
n_random = 3                    # random sets per k
scales = [0.0, 0.5, 2.0, 4.0]   # factors on the set's attention to the image
max_new_tokens = 3
n_examples = 6
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
import contextlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hearlib.paper import plotting as P
from hearlib.paper.report import Report, markdown_table
from hearlib.paper.study import Study, stack
from hearlib.records.heads import head_data, majority
from hearlib.records.stages import Settings

ITEM = "Using the heads (beyond the paper)"
BEYOND = "— (beyond the paper)"
common = dict(store=store, n_mean_images=n_mean_images, method=method, batch_size=batch_size, device=device,
              profile=profile)
settings = dict(n_masks=n_masks, ratio=ratio, seed=seed)
st = Study(model, data, **common)
report = Report("12_using_heads", out,
                dict(profile=profile, model=P.model_label(st.model), model_id=st.model_id, data=st.dataset_id,
                     n_samples=n_samples, n_eval=n_eval, ks=list(ks), n_random=n_random, scales=list(scales),
                     max_new_tokens=max_new_tokens, R=n_mean_images, **settings))

# %% [markdown]
# ## The head sets, from samples the interventions are not measured on

# %%
items = st.samples(n_samples + n_eval, correct_only=correct_only)
found_on, measured_on = items[:n_samples], items[n_samples:]
attr = st.many("attribution", found_on, **settings)
valid = st.many("validation", found_on, **settings)
L, H = int(attr[0]["n_layers"]), int(attr[0]["n_heads"])
N = L * H
theta = stack(attr, "theta").mean(axis=0)                                  # [N] mean θ
attention = stack(attr, "image_attention").reshape(len(attr), N).mean(axis=0)   # [N] Eq. 10
x_star = majority(stack(valid, "x_star"))
ks = [k for k in ks if k < N]


def top(values, k):
    return [int(n) for n in np.lexsort((np.arange(N), -values))[:k]]


rng = np.random.default_rng(seed)
sets = {}
for k in ks:
    sets[("HeAr", k)] = [top(theta, k)]
    sets[("Attention", k)] = [top(attention, k)]
    sets[("Random", k)] = [sorted(int(n) for n in rng.choice(N, k, replace=False)) for _ in range(n_random)]
print(f"{P.model_label(st.model)}: N = {L}×{H}; head set from {len(found_on)} samples, measured on "
      f"{len(measured_on)}; top heads by θ: {[divmod(n, H) for n in top(theta, max(ks))]}; "
      f"majority x*: {[divmod(int(n), H) for n in np.flatnonzero(x_star)]}")

# %% [markdown]
# ## Generation under the interventions
#
# Greedy decoding of `max_new_tokens` tokens, the measured samples in one batch (they share one
# image layout at the organism's fixed resolution). A sample is answered correctly where the first
# generated token is the answer's (the study's criterion); an answer *changed* where the generated
# text differs from the unablated model's.

# %%
engine = st.engine
prompt = Settings().prompt
means = st.pipeline.means(prompt)
samples = [engine.prepare(it.path, answer=it.label, prompt=prompt, sample_id=str(it.image_id)) for it in measured_on]


def batches():
    """The measured samples as model inputs, all in one batch where they share a layout (one fixed
    resolution: the same image positions), else one by one."""
    if len({s.seq_len for s in samples}) == 1 and len({tuple(s.image_positions.tolist()) for s in samples}) == 1:
        first = samples[0].inputs
        return [({k: torch.cat([s.inputs[k] for s in samples]) if torch.is_tensor(v) else v for k, v in first.items()},
                 samples)]
    return [(s.inputs, [s]) for s in samples]


batched = batches()


@torch.no_grad()
def generate(heads=None, mode="ablate", scale=1.0):
    """(correct [n], answers [n]) over the measured samples, under the intervention (None: none)."""
    correct, answers = [], []
    for inputs, group in batched:
        context = contextlib.nullcontext() if heads is None else engine.intervene(heads, mode=mode, scale=scale,
                                                                                   means=means)
        with context:
            tokens = engine.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        tokens = tokens[:, group[0].seq_len:]
        correct += [int(row[0]) == s.answer_id for row, s in zip(tokens, group)]
        answers += [engine.tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens]
    return np.array(correct), answers


base_correct, base_answers = generate()
runs = {key: [generate(heads) for heads in chosen] for key, chosen in sets.items()}
scale_k = max(ks)                       # the largest set ablated above
scaled = {s: generate(top(theta, scale_k), mode="scale", scale=s) for s in scales}


def changed(answers):
    return float(np.mean([a != b for a, b in zip(answers, base_answers)]))


rows = []
for (criterion, k), results in runs.items():
    accuracy = [c.mean() for c, _ in results]
    rows.append({"criterion": criterion, "k": k, "accuracy": float(np.mean(accuracy)),
                 "accuracy min–max": f"{min(accuracy):.2f}–{max(accuracy):.2f}" if len(accuracy) > 1 else "",
                 "answers changed": float(np.mean([changed(a) for _, a in results])), "sets": len(results)})
ablation = pd.DataFrame(rows).sort_values(["k", "criterion"]).reset_index(drop=True)
scaling = pd.DataFrame([{"k": scale_k, "scale": s, "accuracy": float(c.mean()), "answers changed": changed(a)}
                        for s, (c, a) in scaled.items()])
print(f"unablated accuracy {base_correct.mean():.2f} on {len(samples)} samples")
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
ax.plot(scaling.scale, scaling.accuracy, "o-", label="accuracy")
ax.plot(scaling.scale, scaling["answers changed"], "s--", label="answers changed")
ax.axvline(1.0, color="0.8", lw=1)
ax.set_xlabel(f"scale s on the image attention of the top {scale_k} HeAr heads"), ax.set_ylim(-0.05, 1.05)
ax.legend(fontsize=7), ax.set_title("scaling the set's image attention", fontsize=9)
ax = axes[2]
data_ = head_data(st.pipeline.store.root, st.model_id, settings=attr[0].key.split("/")[2].split("-", 1)[1],
                  top_k=max(ks)).document
rows_ = sorted(data_["heads"], key=lambda r: -r["theta_mean"])
means_ = np.array([r["theta_mean"] for r in rows_])
ax.errorbar(np.arange(len(rows_)), means_, yerr=[means_ - [r["theta_ci_low"] for r in rows_],
                                                 [r["theta_ci_high"] for r in rows_] - means_], fmt="o", ms=3)
ax.set_xticks(np.arange(len(rows_)), [f"{r['layer']}.{r['head']}" for r in rows_], rotation=90, fontsize=6)
ax.axhline(0, color="0.8", lw=1)
ax.set_ylabel("mean θ (95% bootstrap interval)"), ax.set_title("θ per head, by mean", fontsize=9)
fig.tight_layout()
report.figure(fig, "using_heads", ITEM)

# %% [markdown]
# ## Examples of changed answers, and the numbers

# %%
k_max = max(ks)
hear_answers = runs[("HeAr", k_max)][0][1]
random_answers = runs[("Random", k_max)][0][1]
examples = pd.DataFrame([{"sample": s.sample_id, "answer": s.answer, "unablated": b,
                          f"top {k_max} HeAr ablated": h, f"{k_max} random ablated": r}
                         for s, b, h, r in zip(samples, base_answers, hear_answers, random_answers) if h != b][:n_examples])
stable = data_["stability"]
halves = stable["halves"]
curve = stable["by_n_samples"]
report.table(ablation, "using_heads_ablation", ITEM,
             f"Accuracy under ablation of k heads during generation, {len(samples)} held-out samples "
             f"(unablated {base_correct.mean():.2f}); Random: mean over {n_random} sets.")
report.table(scaling, "using_heads_scaling", ITEM, f"The top {scale_k} HeAr heads' image attention scaled by s.")
if len(examples):
    report.table(examples, "using_heads_examples", ITEM, f"Answers changed by ablating the top {k_max} HeAr heads.")
report.section(ITEM, "Ablating and scaling head sets while the organism generates "
               "(`notebooks/12_using_heads.py`):\n\n" + markdown_table(ablation) + "\n" + markdown_table(scaling)
               + f"\nStability of the set: x* Jaccard between halves "
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
                "; ".join(f"k={k}: {a['HeAr']:.2f} / {a['Attention']:.2f} / {a['Random']:.2f}" for k, a in per_k.items()),
                BEYOND,
                "" if len(lower) == len(per_k) else
                f"measured: ablating the top-k HeAr heads lowers accuracy more than both k random and k "
                f"attention-chosen heads only for k in {lower or 'none'} of {list(per_k)}")
report.headline(ITEM, "x* Jaccard between disjoint halves of the samples (mean, min–max)",
                f"{halves['mean']:.2f} ({halves['min']:.2f}–{halves['max']:.2f})" if halves else "n/a", BEYOND)
report.write_readme();
