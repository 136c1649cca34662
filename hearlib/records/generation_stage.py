"""The ``generation`` stage's head sets: found on some samples, used on others while the model generates
(notebook 12, through the hook of :mod:`hearlib.method.generation_hook`).

:func:`head_sets` derives, from the attribution records (θ, Eq. 10's image attention) of the first
``head_set_samples`` samples the model answers correctly (all usable ones with
``head_set_correct_only`` False), the sets that notebook 12 compares: for
each k of ``head_set_sizes`` the top-k heads by mean θ (HeAr), the k heads with the largest mean
image attention (Attention), ``random_sets`` sets of k heads drawn from a seeded stream (Random),
each ablated; and the top max(k) HeAr heads with their image attention scaled by each of
``scales`` (where scaling applies, :func:`scaling_applies`). :func:`generate_under` runs a plain greedy ``generate`` under each of them
(:meth:`hearlib.method.engine.Engine.intervene`). The sets depend only on the settings and the
store, so every sample of a sharded run derives the same ones.
"""
from __future__ import annotations

import numpy as np
import torch

from hearlib.method.effects import ranking
from hearlib.records.selection import Selection

__all__ = ["head_sets", "generate_under", "top_heads", "scaling_applies"]


def top_heads(values, k: int) -> list[int]:
    """The k largest of ``values`` as flat head indices, in :func:`hearlib.method.effects.ranking`'s
    order (ties: the lower index)."""
    return [int(n) for n in ranking(values)[:k]]


def scaling_applies(family) -> bool:
    """Whether scaling a head's image attention changes anything: not in a decoder's cross-attention
    layers whose keys are all image keys (Mllama), where renormalising undoes the scale and
    :func:`hearlib.method.generation_hook.intervene` refuses mode 'scale'; so no scaled sets there."""
    return not (family.cross_attention and not family.encoder_decoder)


def head_sets(pipeline, settings) -> dict:
    """``{"found_on": [sample ids], "sets": [{"criterion", "k", "mode", "scale", "heads"}, ...]}``,
    derived once per pipeline and settings (see the module docstring); ``heads`` are flat indices
    n = layer · H + head."""
    key = ("head_sets", pipeline.settings_digest("generation", settings))
    if key not in pipeline.derived:
        found = pipeline.select(Selection(n=settings.head_set_samples, correct_only=settings.head_set_correct_only))
        records = [pipeline.ensure("attribution", item, settings) for item in found]
        theta = np.mean([np.asarray(r["theta"], dtype=np.float64) for r in records], axis=0)
        attention = np.mean([np.asarray(r["image_attention"], dtype=np.float64).reshape(-1) for r in records], axis=0)
        n_heads = theta.size
        sizes = [k for k in settings.head_set_sizes if 0 < k < n_heads]
        rng = np.random.default_rng([settings.seed, 12])
        sets = []
        for k in sizes:
            sets.append(dict(criterion="HeAr", k=k, mode="ablate", scale=1.0, heads=top_heads(theta, k)))
            sets.append(dict(criterion="Attention", k=k, mode="ablate", scale=1.0, heads=top_heads(attention, k)))
            for _ in range(settings.random_sets):
                sets.append(dict(criterion="Random", k=k, mode="ablate", scale=1.0,
                                 heads=sorted(int(n) for n in rng.choice(n_heads, k, replace=False))))
        if sizes and scaling_applies(pipeline.engine.family):
            largest = top_heads(theta, max(sizes))
            sets += [dict(criterion="HeAr", k=max(sizes), mode="scale", scale=float(scale), heads=list(largest))
                     for scale in settings.scales]
        pipeline.derived[key] = {"found_on": [str(item.image_id) for item in found], "sets": sets}
    return pipeline.derived[key]


@torch.no_grad()
def generate_under(engine, sample, means, sets: list[dict], max_new_tokens: int):
    """Greedy ``generate`` of ``max_new_tokens`` tokens with no intervention, then under each set:
    (tokens int64 [1 + S, T] padded with the pad id, correct bool [1 + S]: the first generated
    token is the answer's, texts [1 + S])."""
    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else -1
    rows, texts = [], []
    for chosen in [None, *sets]:
        if chosen is None:
            out = engine.model.generate(**sample.inputs, max_new_tokens=max_new_tokens, do_sample=False)
        else:
            with engine.intervene(chosen["heads"], mode=chosen["mode"], scale=chosen["scale"], means=means):
                out = engine.model.generate(**sample.inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, sample.seq_len:].tolist()
        rows.append(new + [pad] * (max_new_tokens - len(new)))
        texts.append(engine.tokenizer.decode(new, skip_special_tokens=True).strip())
    tokens = np.asarray(rows, dtype=np.int64)
    return tokens, tokens[:, 0] == int(sample.answer_id), texts
