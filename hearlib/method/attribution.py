"""HeAr attribution: the paper's ElasticNet from binary masks to normalized logits (Eq. 1, A.3).

``fit_attribution(masks, pi)`` fits ``π̂(x) = θ·x + b`` with
``ElasticNet(alpha=0.0005, l1_ratio=0.5, max_iter=1000)`` on 80% of the masks and reports, on
the held-out 20%, the explained variance (``sklearn.metrics.explained_variance_score``, the
paper's "R²") and the Pearson correlation between π and π̂. The same fit is used for heads
(x over N heads) and for image tokens (v over P_img tokens).

Choices where the paper is silent (the project's):

* The 80/20 split is a random permutation of the masks from ``np.random.default_rng(seed)``;
  ``n_train = round(train_fraction · M)`` (halves up), the rest is the test set.
* Masks enter the regression as 0.0/1.0 floats, unscaled; ElasticNet fits an intercept
  (sklearn's default), no normalisation.
* ElasticNet's ``random_state`` is fixed (``seed``) though it only matters for
  ``selection="random"``, which is not used; coordinate descent is cyclic, so the fit is
  deterministic.
* If the held-out π or π̂ is constant, Pearson is undefined and reported as NaN.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet
from sklearn.metrics import explained_variance_score

# Bumped whenever a change to the fit would give another θ for the same masks and π; it enters
# every stored record's key (hearlib.records.stages).
FIT_VERSION = 1

__all__ = [
    "ALPHA",
    "L1_RATIO",
    "MAX_ITER",
    "Attribution",
    "train_test_indices",
    "fit_attribution",
    "pearson",
    "r2_by_mask_count",
    "stable_mask_count",
]

ALPHA = 0.0005
L1_RATIO = 0.5
MAX_ITER = 1000


@dataclass(frozen=True)
class Attribution:
    """Result of one fit. ``coef`` is θ (one value per head or per image token)."""

    coef: np.ndarray          # float64 [N]
    intercept: float
    r2: float                 # explained variance on the held-out masks
    pearson: float            # Pearson(π, π̂) on the held-out masks
    n_train: int
    n_test: int
    converged: bool = True    # False if sklearn warned that coordinate descent did not converge

    @property
    def theta(self) -> np.ndarray:
        return self.coef

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """π̂ for ``masks`` (bool or 0/1 [M, N])."""
        return np.asarray(masks, dtype=np.float64) @ self.coef + self.intercept


def train_test_indices(n: int, seed: int = 0, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test masks: a seeded permutation cut at round(f·n)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(math.floor(train_fraction * n + 0.5))
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays; NaN if either is constant or shorter than 2."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((a @ b) / denom, -1.0, 1.0))


def fit_attribution(masks: np.ndarray, pi: np.ndarray, seed: int = 0, train_fraction: float = 0.8,
                    *, alpha: float = ALPHA, l1_ratio: float = L1_RATIO, max_iter: int = MAX_ITER) -> Attribution:
    """Fit θ from ``masks`` (bool [M, N], True = intact) to ``pi`` (float [M]); score on held-out masks."""
    x = np.asarray(masks)
    y = np.asarray(pi, dtype=np.float64).ravel()
    if x.ndim != 2:
        raise ValueError(f"masks must be 2-D [M, N], got shape {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} masks but {y.shape[0]} values of pi")
    if not np.all(np.isfinite(y)):
        raise ValueError("pi contains NaN or infinite values")
    x = x.astype(np.float64)
    train, test = train_test_indices(x.shape[0], seed, train_fraction)
    if train.size < 2 or test.size < 1:
        raise ValueError(f"need at least 2 training and 1 test masks, got {train.size} and {test.size}")
    model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x[train], y[train])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    predicted = model.predict(x[test])
    if test.size >= 2:
        r2 = float(explained_variance_score(y[test], predicted))
    else:
        r2 = float("nan")
    return Attribution(
        coef=np.asarray(model.coef_, dtype=np.float64).copy(),
        intercept=float(model.intercept_),
        r2=r2,
        pearson=pearson(y[test], predicted),
        n_train=int(train.size),
        n_test=int(test.size),
        converged=converged,
    )


def r2_by_mask_count(masks: np.ndarray, pi: np.ndarray, counts: Sequence[int], seed: int = 0,
                     train_fraction: float = 0.8) -> np.ndarray:
    """Held-out R² of the fit on the first ``m`` masks, for each ``m`` in ``counts``: float [len(counts)].

    Masks from :func:`hearlib.method.masks.sample_head_masks` are drawn row by row from one stream, so
    the first ``m`` rows are exactly the masks a run with ``M = m`` would have drawn; each prefix
    gets its own 80/20 split from ``seed``. Counts larger than the masks available raise.
    """
    masks = np.asarray(masks)
    pi = np.asarray(pi, dtype=np.float64)
    out = np.empty(len(counts), dtype=np.float64)
    for index, m in enumerate(counts):
        m = int(m)
        if m > masks.shape[0]:
            raise ValueError(f"count {m} exceeds the {masks.shape[0]} masks available")
        out[index] = fit_attribution(masks[:m], pi[:m], seed=seed, train_fraction=train_fraction).r2
    return out


def stable_mask_count(r2_curve: Sequence[float], tol: float = 0.01, counts: Sequence[int] | None = None,
                      patience: int = 2) -> int | None:
    """Stop rule: the first mask count after which R² has stopped moving.

    Returns ``counts[i]`` for the smallest ``i`` such that the last ``patience`` steps of the
    curve (``r2[i-patience] → … → r2[i]``) each changed R² by less than ``tol`` in absolute value,
    and ``r2[i]`` is finite. This is an *online* rule: it looks only at counts up to ``i``, so a
    collector can draw masks in blocks and stop as soon as it fires. ``counts`` defaults to
    ``1, 2, …`` (i.e. the index + 1). Returns ``None`` when the curve never stabilises (keep the
    full M).
    """
    r2 = np.asarray(r2_curve, dtype=np.float64)
    if counts is None:
        counts = list(range(1, r2.size + 1))
    if len(counts) != r2.size:
        raise ValueError("counts and r2_curve differ in length")
    if patience < 1:
        raise ValueError("patience must be >= 1")
    steps = np.abs(np.diff(r2))
    for i in range(patience, r2.size):
        window = steps[i - patience:i]
        if np.all(np.isfinite(window)) and np.all(window < tol) and np.isfinite(r2[i]):
            return int(counts[i])
    return None
