"""What the image tokens carry when the decoder starts: probes on single image tokens and on the
main object's own tokens, for any registered family (issue 38).

notebook 11's probe on the image tokens' *mean* cannot tell "no image token carries the object"
from "the object's tokens carry it but the background's dilute the mean". These measurements can:

``decoder_input_tokens``   the image tokens as the decoder's first layer receives them [P_img, d]
``token_coverage``         the share of each image token's cell that an object mask covers [P_img]
``token_features``         per image: the mean of all image tokens, the mean of the object's own
                           tokens, the object's best-covered token, one background token, and
                           single tokens drawn at random (grouped by image)
``probe``                  held-out accuracy of a linear or a small-MLP probe, folds grouped by image

Nothing here changes the model: the one hook is removed in ``finally``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["decoder_inputs", "decoder_input_tokens", "token_coverage", "token_features", "probe", "FEATURES", "OBJECT_COVER"]

# a token belongs to the object when the object covers at least this share of its cell
OBJECT_COVER = 0.5
FEATURES = ("image mean", "object tokens", "best object token", "background token", "any single token")


class _DecoderReached(Exception):
    """Raised by the hook once the decoder's input is captured: nothing after it needs to run."""


@torch.no_grad()
def decoder_inputs(engine, sample) -> dict:
    """The keyword arguments the decoder receives for ``sample``: ``inputs_embeds`` and whatever the family adds
    (``deepstack_features``, ``cross_attention_states`` ...), captured before its first layer runs."""
    captured = {}

    def capture(module, args, kwargs):
        captured.update(kwargs)
        raise _DecoderReached

    handle = engine.decoder.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        engine.model(**sample.inputs, use_cache=False)
    except _DecoderReached:
        pass
    finally:
        handle.remove()
    return captured


def decoder_input_tokens(engine, sample) -> np.ndarray:
    """[P_img, d] float32: the decoder's input embeddings at the image positions (after the
    projector, before the first decoder layer), in the order of ``sample.image_positions``; in a
    cross-attention model the projected vision states its cross-attention layers read."""
    inputs = decoder_inputs(engine, sample)
    if engine.family.encoder_decoder:      # the encoder's output, from which the decoder's cross-attention keys come
        embeds = inputs["encoder_hidden_states"]
    elif engine.family.cross_attention:    # Mllama: the image tokens are the states its cross-attention keys come from,
        states = inputs["cross_attention_states"]            # [images × tiles, keys per tile, d]: one row per sample
        embeds = states.reshape(sample.inputs["input_ids"].shape[0], -1, states.shape[-1])
    else:
        embeds = inputs["inputs_embeds"]
    return embeds[0, sample.image_positions.to(embeds.device)].float().cpu().numpy()


def token_coverage(layout, mask: np.ndarray) -> np.ndarray:
    """[n_tokens] the share of each spatial token's cell covered by ``mask`` (bool [H, W] over the
    whole image the processor received, any resolution); 0 for tokens that cover no part of it."""
    mask = np.asarray(mask, dtype=np.float64)
    height, width = mask.shape
    scale_x, scale_y = width / layout.image_size[0], height / layout.image_size[1]
    cover = np.zeros(layout.n_tokens)
    for panel in layout.panels:
        boxes = panel.cell_boxes()
        for (row, col), token in np.ndenumerate(panel.tokens):
            if token < 0:
                continue
            x0, y0, x1, y1 = boxes[row, col]
            xs = slice(int(round(x0 * scale_x)), max(int(round(x1 * scale_x)), int(round(x0 * scale_x)) + 1))
            ys = slice(int(round(y0 * scale_y)), max(int(round(y1 * scale_y)), int(round(y0 * scale_y)) + 1))
            cover[token] = mask[ys, xs].mean()
    return cover


def token_features(tokens: np.ndarray, cover: np.ndarray, rng: np.random.Generator,
                   n_single: int = 8) -> dict[str, np.ndarray]:
    """One image's features for :data:`FEATURES`: each [d], but ``any single token`` [n_single, d].

    The object's tokens are those it covers by at least :data:`OBJECT_COVER` (its best-covered token
    when none is); the background token is drawn among the tokens it does not touch (the least
    covered when it touches all)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    cover = np.asarray(cover, dtype=np.float64)
    best = int(np.argmax(cover))
    own = np.flatnonzero(cover >= OBJECT_COVER)
    empty = np.flatnonzero(cover == 0)
    background = int(rng.choice(empty)) if empty.size else int(np.argmin(cover))
    singles = rng.choice(len(tokens), size=min(n_single, len(tokens)), replace=False)
    return {"image mean": tokens.mean(0), "object tokens": tokens[own].mean(0) if own.size else tokens[best],
            "best object token": tokens[best], "background token": tokens[background],
            "any single token": tokens[singles]}


def probe(features, labels, groups=None, *, classifier: str = "linear", folds: int = 3, seed: int = 0) -> dict:
    """Held-out accuracy of a probe predicting ``labels`` [n] from ``features`` [n, d].

    ``classifier``: ``linear`` (logistic regression) or ``mlp`` (one hidden layer of 128, at most
    400 epochs of Adam), both on standardised features. Folds are stratified and, with ``groups``
    (e.g. the image of each single token), no group is split between training and test. Returns
    ``accuracy`` (mean over folds), ``chance`` (the share of the most frequent label) and ``n``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray([str(v) for v in labels])
    if classifier == "linear":
        model = LogisticRegression(max_iter=2000)
    elif classifier == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=400, random_state=seed)
    else:
        raise ValueError(f"classifier must be 'linear' or 'mlp', got {classifier!r}")
    if groups is None:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels)
    else:
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels, groups)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)     # a fixed budget of iterations, as stated
        for train, test in splits:
            fitted = make_pipeline(StandardScaler(), model).fit(features[train], labels[train])
            scores.append(fitted.score(features[test], labels[test]))
    _, counts = np.unique(labels, return_counts=True)
    return {"accuracy": float(np.mean(scores)), "chance": float(counts.max() / counts.sum()), "n": int(labels.size)}
