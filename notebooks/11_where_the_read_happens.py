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
# # 11 · Where the read happens (beyond the paper)
#
# The paper finds the heads that carry image-to-text information in the middle-to-late layers of
# every real LVLM (Fig. 3C). This notebook asks *where the final position takes the image's
# information*, with four measurements that do not rely on HeAr, per model:
#
# - **window knockout** (Zhang et al., CVPR 2025): every head of layers [l, l + w) mean-ablated for
#   the text queries (the paper's intervention on whole layers); the drop of the normalised answer
#   logit, 1 − π, per start layer, beside HeAr's share of x* per layer;
# - **question dependence**: per layer, the correlation between the final position's attention over
#   the image under the object question and under the colour, position and kind questions (a read
#   that does not depend on the question cannot be selecting what the question asks);
# - **probes by layer**: which attributes, asked and unasked, a linear probe decodes from the final
#   position's residual stream after each layer, and from the image tokens' mean (Neo et al., ICLR 2025);
# - **patching**: every head's output at the final position of one layer copied from another image
#   with another answer; the share of the logit difference that moves, per layer.
#
# The verdicts on the hypotheses of issue 27 are written in docs/ORGANISM.md from these numbers.

# %% tags=["parameters"]
profile = "quick"   # notebooks/profiles/<profile>.yaml: the models, the data and every size
overrides = {}      # values that replace the profile's, e.g. {"n_samples": 8} (make figures sets data, store, out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hearlib.paper import analysis as A
from hearlib.paper import plotting as P
from hearlib.method import readsite as R
from hearlib.paper.plan import readsite_models as models_of
from hearlib.records.questions import answer_of
from hearlib.paper.report import markdown_table
from hearlib.paper.study import stack
from hearlib.paper.notebook import open_notebook

nb = open_notebook("11_where_the_read_happens", profile, **overrides)
p, st, report, settings = nb.params, nb.study, nb.report, nb.settings

ITEM = "Where the read happens (beyond the paper)"
BEYOND = "— (beyond the paper)"
studied = models_of(dict(model=p.model, models=[p.model], organisms=p.organisms, readsite_models=p.readsite_models))
nb.record_settings(models=[P.model_label(m) for m in studied])

# %% [markdown]
# ## The measurements, per model

# %%
results = {}
for m in studied:
    sm = nb.study_of(m)
    types = sm.questions()
    items = sm.samples(p.n_readsite_samples, correct_only=p.correct_only, questions=types.values())
    knock = {n: sm.many("knockout", items, desc=f"knockout, {n}", prompt=q.prompt, answer=q.answer)
             for n, q in types.items()}
    read = {n: sm.many("readout", items, desc=f"readout, {n}", prompt=q.prompt, answer=q.answer)
            for n, q in types.items()}
    patch = sm.many("patching", items, desc="patching")
    valid = sm.many("validation", sm.samples(p.n_size_samples, correct_only=p.correct_only), **settings)
    L, H = read["object"][0]["n_layers"], read["object"][0]["n_heads"]
    labels = {n: [answer_of(it, q.answer) for it in items] for n, q in types.items()}
    both = [r for r in patch if r.meta.get("correct") and r.meta.get("partner_correct")] or list(patch)
    res = dict(L=L, H=H, n=len(items), types=list(types),
               drop={n: R.knockout_drop(stack(k, "pi_w1")) for n, k in knock.items()},
               drop2={n: R.knockout_drop(stack(k, "pi_w2")) for n, k in knock.items() if L > 1},
               xstar=A.head_distribution(stack(valid, "x_star"), L, H).mean(axis=1),
               patch=np.nanmean(stack(both, "effect"), axis=0), flipped=stack(both, "flipped").mean(axis=0),
               n_pairs=len(both))
    if len(types) > 1:
        maps = {n: stack(r, "final_attention").mean(axis=2) for n, r in read.items()}   # [n, L, P_img]
        res["dependence"] = R.question_dependence(maps)
    probes = {}
    final_obj = stack(read["object"], "residual_final")
    for n in types:
        try:
            probes[f"{n} (object asked)"] = R.probe_by_layer(final_obj, labels[n], seed=p.seed)
            if n != "object":
                probes[f"{n} ({n} asked)"] = R.probe_by_layer(stack(read[n], "residual_final"), labels[n], seed=p.seed)
                probes[f"object ({n} asked)"] = R.probe_by_layer(stack(read[n], "residual_final"), labels["object"],
                                                                seed=p.seed)
        except ValueError as error:          # too few samples per label for a probe
            print(f"{P.model_label(m)}: no probe for {n}: {error}")
    try:
        probes["object at the image tokens (mean)"] = R.probe_by_layer(stack(read["object"], "residual_image"),
                                                                       labels["object"], seed=p.seed)
    except ValueError as error:
        print(f"{P.model_label(m)}: no image-token probe: {error}")
    res["probes"] = probes
    results[P.model_label(m)] = res
    print(f"{P.model_label(m)}: {len(items)} samples, N = {L}×{H}, questions {', '.join(types)}; "
          f"knockout peak at layer {R.peak_layer(res['drop']['object'])}, x* peak at layer {R.peak_layer(res['xstar'])}")

# %% [markdown]
# ## Window knockout beside HeAr's x*, question dependence, probes and patching
#
# One row per model. Left: the drop of the normalised answer logit (median over samples of 1 − π)
# when every head of one layer (solid) or two consecutive layers (dashed, plotted at the first) is
# ablated, per question, and
# the share of samples whose x* holds the layer's heads (grey bars). Second: the correlation of
# the final position's attention over the image between the object question and the others. Third:
# probe accuracy after each layer (row 0 = the embeddings). Right: patching.

# %%
rows = len(results)
fig, axes = plt.subplots(rows, 4, figsize=(15, 3.2 * rows), squeeze=False)
for row, (name, res) in enumerate(results.items()):
    L, layers = res["L"], np.arange(res["L"])
    ax = axes[row, 0]
    ax.bar(layers, res["xstar"], color="0.85", label="HeAr: share with x* here")
    for n, curve in res["drop"].items():
        line, = ax.plot(layers, curve, "o-", ms=3, label=f"knockout, {n}")
        if n in res["drop2"]:
            ax.plot(layers[:L - 1], res["drop2"][n], "--", color=line.get_color(), lw=1)
    ax.set_xlabel("layer"), ax.set_ylabel("1 − π (drop, median)"), ax.set_title(f"{name}: window knockout", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[row, 1]
    if "dependence" in res:
        for n, curve in res["dependence"]["per_question"].items():
            ax.plot(layers, curve, "o-", ms=3, label=f"object vs {n}")
        ax.set_ylim(-0.2, 1.05), ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "one question type only:\nno comparison", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("layer"), ax.set_ylabel("correlation of attention maps")
    ax.set_title("question dependence of the final position's read", fontsize=9)
    ax = axes[row, 2]
    for label, probe in res["probes"].items():
        ax.plot(np.arange(L + 1), probe["accuracy"], "o-", ms=3, label=f"{label} (chance {probe['chance']:.2f})")
    ax.set_xlabel("after layer (0 = embeddings)"), ax.set_ylabel("probe accuracy"), ax.set_ylim(0, 1.05)
    ax.set_title("linear probes (3-fold)", fontsize=9), ax.legend(fontsize=5)
    ax = axes[row, 3]
    ax.plot(layers, res["patch"], "o-", ms=3, label="share of logit difference moved")
    ax.plot(layers, res["flipped"], "s--", ms=3, label="answer flipped")
    ax.set_xlabel("layer patched"), ax.set_ylim(-0.1, 1.05), ax.legend(fontsize=6)
    ax.set_title(f"patching the final position's heads ({res['n_pairs']} pairs)", fontsize=9)
fig.tight_layout()
report.figure(fig, "readsite_overview", ITEM)

# %% [markdown]
# ## The numbers
#
# Relative depth is layer / (L − 1): 0 the first layer, 1 the last. "object formed" is the first
# layer after which the probe reaches 90% of its best accuracy.

# %%
table_rows = []
for name, res in results.items():
    L = res["L"]
    ko = R.peak_layer(res["drop"]["object"])
    xs = R.peak_layer(res["xstar"])
    pp = R.peak_layer(res["patch"])
    dep = res.get("dependence")
    probes = res["probes"]
    table_rows.append({
        "model": name, "layers": L, "samples": res["n"],
        "knockout peak, object question (depth)": f"{ko} ({R.relative_depth(ko, L):.2f})",
        "knockout drop at the peak / at layer 0": f"{res['drop']['object'][ko]:.2f} / {res['drop']['object'][0]:.2f}",
        "knockout peak per question": ", ".join(f"{n} {R.peak_layer(c)}" for n, c in res["drop"].items()),
        "x* peak (depth)": f"{xs} ({R.relative_depth(xs, L):.2f})",
        "patching peak (moved at peak)": f"{pp} ({res['patch'][pp]:.2f})",
        "attention correlation across questions, layer 0 / later mean":
            (f"{dep['correlation'][0]:.2f} / {np.nanmean(dep['correlation'][1:]):.2f}" if dep is not None and L > 1
             else "n/a"),
        "object formed at the final position (after layer)":
            str(R.first_layer_reaching(probes["object (object asked)"]["accuracy"])) if "object (object asked)" in probes else "n/a",
        "unasked object decodable, colour asked (best)":
            f"{np.nanmax(probes['object (color asked)']['accuracy']):.2f}" if "object (color asked)" in probes else "n/a",
        "object at the image tokens: embeddings / best":
            (f"{probes['object at the image tokens (mean)']['accuracy'][0]:.2f} / "
             f"{np.nanmax(probes['object at the image tokens (mean)']['accuracy']):.2f}")
            if "object at the image tokens (mean)" in probes else "n/a",
    })
numbers = pd.DataFrame(table_rows)
report.table(numbers, "readsite_numbers", ITEM,
             f"Per model, on {p.n_readsite_samples} samples answered correctly under every question type "
             f"(HeAr's x* on {p.n_size_samples}).")
report.section(ITEM, "Where each model's final position takes the image's information "
               "(`notebooks/11_where_the_read_happens.py`; verdicts per hypothesis in docs/ORGANISM.md):\n\n"
               + markdown_table(numbers))
numbers.T

# %%
report.headline(ITEM, "layer where the window knockout of the paper prompt peaks (relative depth), per model",
                ", ".join(f"{n} {R.peak_layer(r['drop']['object'])} of {r['L']} "
                          f"({R.relative_depth(R.peak_layer(r['drop']['object']), r['L']):.2f})"
                          for n, r in results.items()),
                "middle layers (Zhang et al.: the middle ~25% of layers carry the flow; paper Fig. 3C)",
                "" if any(R.relative_depth(R.peak_layer(r["drop"]["object"]), r["L"]) >= 0.3 for r in results.values())
                else "Every model here reads the image in its first layers.")
report.headline(ITEM, "correlation of the final position's layer-0 attention across questions, per model",
                ", ".join(f"{n} {r['dependence']['correlation'][0]:.2f}" for n, r in results.items()
                          if "dependence" in r) or "one question type only", BEYOND)
nb.finish();
