"""Design D2 of issue 38: the category erased from the tower's tokens before the projector reads them.

A closed-form linear concept eraser (LEACE, Belrose et al. 2023, from the ``concept-erasure`` package) is
fitted on the tower's tokens that the main object covers, with the object's category as the concept, and
applied to every image token. The decoder is then trained on the erased tokens, and the eraser is folded
into the projector's first linear layer, so the saved organism is a plain transformers LLaVA whose
projector erases the category itself (docs/ORGANISM.md, design D2).

The eraser is affine: ``erase(x) = x − (x − b) Mᵀ`` with ``M = L R`` (rank k − 1 for k categories).
Folded into ``linear_1(x) = x Wᵀ + c``: ``W' = W (I − M)``, ``c' = c + W M b``.
"""
from __future__ import annotations

import numpy as np
import torch

from hearlib.errors import UserError
from hearlib.method.tokenprobes import OBJECT_COVER

__all__ = ["CONCEPTS", "erase_features", "fit_eraser", "fold_into_linear", "object_tokens", "probe_accuracy"]

# the concepts an eraser can be fitted on: the label of the main object (Data.labels' question)
CONCEPTS = {"category": "object"}


def object_tokens(feats: torch.Tensor, cover: torch.Tensor, labels: list[str | None]) -> tuple[torch.Tensor, list[str]]:
    """The tokens [M, w] that the main object covers by at least ``OBJECT_COVER`` of their cell, with the
    label of their image (images without a label are skipped)."""
    rows, names = [], []
    for tokens, share, label in zip(feats, cover, labels):
        if label is None:
            continue
        own = share >= OBJECT_COVER
        rows.append(tokens[own])
        names += [label] * int(own.sum())
    if not rows:
        raise UserError("no image has an object token with a label: nothing to fit an eraser on")
    return torch.cat(rows), names


def fit_eraser(feats: torch.Tensor, cover: torch.Tensor | None, labels: list[str | None]):
    """A LEACE eraser of ``labels`` (one per image) fitted on the object's tokens of ``feats`` [N, P, w]
    (``cover`` [N, P]: the share of each token's cell the main object covers)."""
    from concept_erasure import LeaceEraser

    if cover is None:
        raise UserError("erasing a concept needs the scenes' object masks (generated scenes only)")
    tokens, names = object_tokens(feats, cover, labels)
    classes = sorted(set(names))
    index = torch.tensor([classes.index(n) for n in names])
    onehot = torch.nn.functional.one_hot(index, len(classes)).to(torch.float64)
    return LeaceEraser.fit(tokens.to(torch.float64), onehot)


@torch.no_grad()
def fold_into_linear(linear: torch.nn.Linear, eraser) -> None:
    """Make ``linear(x)`` equal the old ``linear(eraser(x))`` for every x (in place)."""
    weight = linear.weight.to(torch.float64)
    eye = torch.eye(weight.shape[1], dtype=torch.float64)
    erase = eye - eraser.proj_left.to(torch.float64) @ eraser.proj_right.to(torch.float64)   # I − M
    shift = weight @ (eye - erase) @ eraser.bias.to(torch.float64) if eraser.bias is not None else 0.0
    linear.weight.copy_((weight @ erase).to(linear.weight.dtype))
    if linear.bias is None:
        if eraser.bias is not None:
            raise UserError("the projector's first layer has no bias to take the eraser's shift")
    else:
        linear.bias.add_(torch.as_tensor(shift, dtype=torch.float64).to(linear.bias.dtype))


def probe_accuracy(feats: torch.Tensor, cover: torch.Tensor, labels: list[str | None], *, classifier: str = "linear",
                   seed: int = 0) -> float:
    """Cross-validated accuracy of a probe for the label from the mean of each image's object tokens."""
    from hearlib.method.tokenprobes import probe

    x, y = [], []
    for tokens, share, label in zip(feats, cover, labels):
        own = share >= OBJECT_COVER
        if label is None or not bool(own.any()):
            continue
        x.append(tokens[own].mean(0).numpy())
        y.append(label)
    return float(probe(np.stack(x), y, classifier=classifier, seed=seed)["accuracy"])


def erase_features(concept: str | None, feats: torch.Tensor, val_feats: torch.Tensor | None, train, heldout,
                   features_of):
    """Fit the eraser of ``concept`` on the training tokens ``feats`` [N, P, w] and erase them (and the
    validation tokens, if any). Returns (eraser, erased training features, erased validation features,
    report), the report printed: probes of the concept from the mean of the object's tokens on the held-out
    images (their tokens from ``features_of(images)``) before and after erasure (linear and MLP), and of the
    colour after: the design's gate. No ``concept``: (None, feats, val_feats, None)."""
    if concept is None:
        return None, feats, val_feats, None
    if concept not in CONCEPTS:
        raise UserError(f"--erase takes one of {', '.join(CONCEPTS)}, not {concept!r}")
    question = CONCEPTS[concept]
    eraser = fit_eraser(feats, train.patch_cover, train.labels[question])
    heldout_feats = features_of(heldout.images)
    erased_heldout = eraser(heldout_feats.to(torch.float64)).float()
    labelled = torch.tensor([v is not None for v in train.labels[question]])
    report = {"concept": concept, "fitted_on_tokens": int((train.patch_cover[labelled] >= OBJECT_COVER).sum()),
              "heldout_probe": {}}
    for name, tokens in (("before", heldout_feats), ("after", erased_heldout)):
        report["heldout_probe"][name] = {
            classifier: probe_accuracy(tokens, heldout.patch_cover, heldout.labels[question], classifier=classifier)
            for classifier in ("linear", "mlp")}
    report["heldout_probe"]["colour_after"] = probe_accuracy(erased_heldout, heldout.patch_cover, heldout.labels["color"])
    print(f"{concept} erased (LEACE on {report['fitted_on_tokens']} object tokens); held-out probes from the "
          f"object's tokens: {report['heldout_probe']}", flush=True)
    erased_val = None if val_feats is None else eraser(val_feats.to(torch.float64)).float()
    return eraser, eraser(feats.to(torch.float64)).float(), erased_val, report
