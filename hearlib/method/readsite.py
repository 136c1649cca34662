"""Where the read happens: in which layers the final position takes the image's information.

Four per-sample measurements, for any registered family (issue 27; beyond the paper, after
Zhang et al., CVPR 2025, and Neo et al., ICLR 2025):

``window_knockout``      π with every head of layers [l, l + w) mean-ablated for the text queries
                         (the paper's intervention, Eq. 5, applied to whole layers), per start l
``final_attention``      the final position's attention over the image tokens after each layer
                         (mean over heads), to compare across questions about the same image
``residuals``            the final position's residual stream and the image tokens' mean residual
                         after the embedding and after each layer (for linear probes by layer)
``patch_final_heads``    every head's output at the final position of one layer copied from image A
                         into the forward of image B; how far B's answer moves to A's

The stages ``knockout``, ``readout`` and ``patching`` of :mod:`hearlib.records.stages` store these per
sample; the analyses across samples below (``knockout_drop``, ``question_dependence``,
``probe_by_layer``, ``relative_depth``) turn the records into notebook 11's numbers. Nothing here
changes the model: every hook is removed in ``finally``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

__all__ = ["window_masks", "window_knockout", "final_attention", "residuals", "patch_final_heads",
           "knockout_drop", "question_dependence", "probe_by_layer", "relative_depth", "peak_layer", "first_layer_reaching"]


def window_masks(n_layers: int, n_heads: int, width: int) -> np.ndarray:
    """Head masks (True = intact) [L - w + 1, L·H] that ablate every head of layers [l, l + w)."""
    if not 1 <= width <= n_layers:
        raise ValueError(f"window width must be in 1..{n_layers}, got {width}")
    starts = n_layers - width + 1
    masks = np.ones((starts, n_layers * n_heads), dtype=bool)
    for start in range(starts):
        masks[start, start * n_heads:(start + width) * n_heads] = False
    return masks


def window_knockout(engine, sample, means, width: int = 1, method: str = "fast") -> np.ndarray:
    """π (Eq. 7's normalised logit) with all heads of each window [l, l + w) ablated, per start l.

    1 − π is the share of the image's effect on the answer logit that the window carries."""
    masks = window_masks(engine.n_layers, engine.n_heads, width)
    return np.asarray(engine.normalized(sample, means, masks, method=method), dtype=np.float64)


def final_attention(engine, sample) -> np.ndarray:
    """[L, P_img] the final position's attention over the image tokens in each layer, mean over heads."""
    record = engine.record(sample)
    return record.text_to_image[:, :, -1, :].mean(axis=1).astype(np.float64)


@contextmanager
def _hooks(handles: list) -> Iterator[list]:
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def _output_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def residuals(engine, sample) -> tuple[np.ndarray, np.ndarray]:
    """The residual stream at the final position and the mean over the image positions, after the
    embedding (row 0) and after each decoder layer (row l + 1): two float32 arrays [L + 1, d]."""
    if engine.family.cross_attention:
        from hearlib.errors import UserError

        raise UserError(f"{engine.family.name}: the image tokens are cross-attention keys, not positions of the "
                        "residual stream; there is no image-token residual to probe")
    layers = engine.family.layers_of(engine.model)
    captured: dict[int, torch.Tensor] = {}

    def embeds(module, args, kwargs):
        captured[-1] = kwargs.get("inputs_embeds")

    def after(index):
        def hook(module, args, output):
            state = _output_tensor(output).detach()
            if engine.family.layer_residual is not None:
                state = engine.family.layer_residual(engine.model.config, state)
            captured[index] = state
        return hook

    handles = [engine.decoder.register_forward_pre_hook(embeds, with_kwargs=True)]
    handles += [layer.register_forward_hook(after(i)) for i, layer in enumerate(layers)]
    with _hooks(handles):
        engine.model(**sample.inputs, use_cache=False)
    states = [captured[-1]] + [captured[i] for i in range(len(layers))]
    image = sample.image_positions.to(states[0].device)
    final = torch.stack([s[0, -1] for s in states]).float().cpu().numpy()
    image_mean = torch.stack([s[0, image].mean(0) for s in states]).float().cpu().numpy()
    return final, image_mean


@torch.no_grad()
def _final_head_inputs(engine, sample) -> list[torch.Tensor]:
    """Each layer's output-projection input (all heads' outputs, concatenated) at the final position."""
    projections = [engine.family.output_projection_of(a) for a in engine.family.attention_modules(engine.model)]
    captured: dict[int, torch.Tensor] = {}

    def capture(index):
        def hook(module, args):
            captured[index] = args[0][:, -1].detach().clone()
        return hook

    with _hooks([p.register_forward_pre_hook(capture(i)) for i, p in enumerate(projections)]):
        engine.model(**sample.inputs, use_cache=False)
    return [captured[i] for i in range(len(projections))]


@torch.no_grad()
def _logits_patched(engine, sample, layer: int, replacement: torch.Tensor) -> torch.Tensor:
    projection = engine.family.output_projection_of(engine.family.attention_modules(engine.model)[layer])

    def patch(module, args):
        states = args[0].clone()
        states[:, -1] = replacement
        return (states,) + tuple(args[1:])

    with _hooks([projection.register_forward_pre_hook(patch)]):
        return engine.model(**sample.inputs, use_cache=False).logits[0, -1].float()


@torch.no_grad()
def patch_final_heads(engine, source, target) -> dict:
    """Patch every layer's head outputs at the final position from ``source`` (image A) into
    ``target`` (image B, same prompt, another answer), one layer at a time.

    Returns ``effect`` [L]: (d_patched − d_B) / (d_A − d_B) with d = logit(A's answer) −
    logit(B's answer) (0: nothing moved, 1: B's forward now prefers A's answer as A's does), and
    ``flipped`` [L]: whether B's argmax became A's answer. Both answers must be single ids."""
    if source.answer_id is None or target.answer_id is None:
        raise ValueError("both samples need an answer")
    a, b = source.answer_id, target.answer_id
    clean_a = engine.model(**source.inputs, use_cache=False).logits[0, -1].float()
    clean_b = engine.model(**target.inputs, use_cache=False).logits[0, -1].float()
    d_a, d_b = float(clean_a[a] - clean_a[b]), float(clean_b[a] - clean_b[b])
    head_inputs = _final_head_inputs(engine, source)
    effect, flipped = [], []
    for layer, replacement in enumerate(head_inputs):
        logits = _logits_patched(engine, target, layer, replacement)
        effect.append((float(logits[a] - logits[b]) - d_b) / (d_a - d_b) if d_a != d_b else float("nan"))
        flipped.append(int(logits.argmax()) == a)
    return {"effect": np.asarray(effect), "flipped": np.asarray(flipped), "d_source": d_a, "d_target": d_b}


# ----------------------------------------------------------------------------- across samples

def knockout_drop(pis) -> np.ndarray:
    """Median over samples of 1 − π per window start: the share of the image's effect a window
    carries. The median, because π divides by ℓ(1) − ℓ(0), which is small for a few samples of some
    questions (an answer the image barely moves), and their 1 − π would swamp a mean."""
    return 1.0 - np.median(np.asarray(pis, dtype=np.float64), axis=0)


def peak_layer(curve) -> int:
    """The layer (index) where a per-layer curve is largest."""
    return int(np.nanargmax(np.asarray(curve, dtype=np.float64)))


def first_layer_reaching(accuracy, share: float = 0.9) -> int:
    """The first layer whose probe accuracy reaches ``share`` of the best (where "the object is formed")."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    return int(np.argmax(accuracy >= share * np.nanmax(accuracy)))


def relative_depth(layer: float, n_layers: int) -> float:
    """A layer's depth as a fraction: 0 for the first layer, 1 for the last (layer / (L − 1))."""
    return float(layer) / max(n_layers - 1, 1)


def question_dependence(maps: dict) -> dict:
    """Per layer, how much the final position's attention over the image depends on the question.

    ``maps``: question -> [n_samples, L, P_img] (the same samples, in the same order, under each
    question; the first question is the reference). Returns ``correlation`` [L] (mean over samples
    and over the other questions of the Pearson correlation with the reference's map) and
    ``per_question`` (question -> [L])."""
    names = list(maps)
    if len(names) < 2:
        raise ValueError("question dependence needs at least two questions")
    reference = np.asarray(maps[names[0]], dtype=np.float64)
    per_question = {}
    for name in names[1:]:
        other = np.asarray(maps[name], dtype=np.float64)
        if other.shape != reference.shape:
            raise ValueError(f"question {name!r}: maps of shape {other.shape}, expected {reference.shape}")
        a = reference - reference.mean(-1, keepdims=True)
        b = other - other.mean(-1, keepdims=True)
        denominator = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(denominator > 0, (a * b).sum(-1) / denominator, np.nan)
        per_question[name] = np.nanmean(r, axis=0)
    return {"correlation": np.nanmean(np.stack(list(per_question.values())), axis=0), "per_question": per_question}


def probe_by_layer(states, labels, folds: int = 3, seed: int = 0) -> dict:
    """A linear probe after each layer: ``states`` [n, L + 1, d], ``labels`` [n] (words).

    Returns ``accuracy`` [L + 1] (mean held-out accuracy of a logistic regression over ``folds``
    stratified folds, features standardised on the training folds) and ``chance`` (the share of
    the most frequent label). Labels with fewer samples than folds are dropped (with their samples)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    states = np.asarray(states, dtype=np.float64)
    labels = np.asarray([str(v) for v in labels])
    values, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, values[counts >= folds])
    states, labels = states[keep], labels[keep]
    if len(np.unique(labels)) < 2:
        raise ValueError("a probe needs at least two labels with as many samples as folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy = np.empty(states.shape[1])
    for row in range(states.shape[1]):
        scores = []
        for train, test in splitter.split(states[:, row], labels):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            probe.fit(states[train, row], labels[train])
            scores.append(probe.score(states[test, row], labels[test]))
        accuracy[row] = float(np.mean(scores))
    _, counts = np.unique(labels, return_counts=True)
    return {"accuracy": accuracy, "chance": float(counts.max() / counts.sum()), "n": int(labels.size)}
