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
results, left_out = {}, {}
for m in studied:
    sm = nb.study_of(m)
    types = sm.questions()
    items = sm.samples(p.n_readsite_samples, correct_only=p.correct_only, questions=types.values())
    why = sm.refusal("readout", items[0], prompt=types["object"].prompt, answer=types["object"].answer)
    if why:                   # a model without an image-token residual (Mllama's image tokens are keys)
        left_out[P.model_label(m)] = why
        print(f"{P.model_label(m)}: left out of this notebook: {why}")
        continue
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
if left_out:
    nb.record_settings(left_out="; ".join(f"{name} ({why})" for name, why in left_out.items()))

# %% [markdown]
# ## Window knockout — The paper: the image reaches the text in the middle-to-late layers (Fig. 3C)
#
# The drop of the normalised answer logit (median over samples of 1 − π) when every head of one layer
# (solid) or two consecutive layers (dashed, plotted at the first) is ablated, per question, beside the
# share of samples whose x* holds the layer's heads (grey bars).

# %%
report.figure(P.readsite_panels(results, "knockout"), "readsite_knockout", ITEM)
depths = {n: R.relative_depth(R.peak_layer(r["drop"]["object"]), r["L"]) for n, r in results.items()}
report.headline(ITEM, "layer where the window knockout of the paper prompt peaks (relative depth), per model",
                ", ".join(f"{n} {R.peak_layer(r['drop']['object'])} of {r['L']} ({depths[n]:.2f})"
                          for n, r in results.items()),
                "middle layers (Zhang et al.: the middle ~25% of layers carry the flow; paper Fig. 3C)",
                verdict="agrees" if any(d >= 0.3 for d in depths.values()) else "disagrees",
                note="" if any(d >= 0.3 for d in depths.values()) else
                "Every model here reads the image in its first layers.")

# %% [markdown]
# ## Question dependence — Does the final position read the image differently for each question?
#
# The correlation of the final position's attention over the image between the object question and each
# other question, per layer (1: the question does not change where it looks).

# %%
report.figure(P.readsite_panels(results, "dependence"), "readsite_dependence", ITEM)
layer0 = {n: r["dependence"]["correlation"][0] for n, r in results.items() if "dependence" in r}
report.headline(ITEM, "correlation of the final position's layer-0 attention across questions, per model",
                ", ".join(f"{n} {c:.2f}" for n, c in layer0.items()) or "one question type only", BEYOND,
                verdict="beyond the paper")

# %% [markdown]
# ## Probes — After which layer can the object be read at the final position?
#
# Linear-probe accuracy after each layer (0 = the embeddings), at the final position for each question
# asked, and at the image tokens' mean.

# %%
report.figure(P.readsite_panels(results, "probes"), "readsite_probes", ITEM)
formed = {n: R.first_layer_reaching(r["probes"]["object (object asked)"]["accuracy"])
          for n, r in results.items() if "object (object asked)" in r["probes"]}
report.headline(ITEM, "first layer after which the object is decodable at the final position (90% of the best "
                "probe accuracy), per model", ", ".join(f"{n} {k} of {results[n]['L']}" for n, k in formed.items())
                or "too few samples per object for a probe", BEYOND, verdict="beyond the paper")

# %% [markdown]
# ## Patching — Which layer's heads at the final position carry the answer?
#
# The share of the logit difference moved, and of answers flipped, when the final position's heads of one
# layer are patched from a sample with another answer.

# %%
report.figure(P.readsite_panels(results, "patching"), "readsite_patching", ITEM)
moved = {n: R.peak_layer(r["patch"]) for n, r in results.items()}
report.headline(ITEM, "layer where patching the final position's heads moves the answer most, per model",
                ", ".join(f"{n} {k} of {results[n]['L']} ({results[n]['patch'][k]:.2f})" for n, k in moved.items()),
                BEYOND, verdict="beyond the paper")

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
nb.finish()
