"""The per-sample effects the stages compute, engine-agnostic (METHOD.md, "Single-head ablation" to
"Image tokens"), and the split of head sets across samples (Fig. 10).

Every analysis that needs ablated forwards takes a callable::

    evaluate(heads: bool[M, N], text: bool[M, P_txt] | None = None,
             image: bool[M, P_img] | None = None) -> np.ndarray float64 [M]

returning normalized logits π (1 = unablated, 0 = every head ablated), True = intact. With the
engine it is ``functools.partial(engine.normalized, sample, means)`` (see
:func:`engine_evaluator`); in the tests it is a synthetic function. Each analysis builds all
its masks first and calls ``evaluate`` once per batch, so the engine can batch them.

Head index ``n = l·H + h`` (layer-major), as in the engine.

Choices where METHOD.md is silent (the project's):

* **Ranking ties**: orders are ``argsort(-score, kind="stable")``, so equal scores keep the
  lower head index first. NaN scores rank last.
* **Never reached**: :func:`min_heads` returns ``N + 1`` (:data:`NOT_REACHED` is the offset,
  the sentinel is ``len(curve) + 1``) when no ``k`` in 1..N meets the threshold. The value is an
  int so means and plots stay defined; test ``k > len(curve)`` to detect it.
* **x\\*** is the top ``k*`` heads by θ with ``k* = min_heads(faithfulness_HeAr, 0.8)``. Since
  ``k = N`` keeps all heads intact (π = 1), ``k*`` exists for any threshold < 1; if the curve
  never passes (threshold ≥ 1 or a noisy evaluate), x\\* is every head.
* **Text tokens**: Δ_i uses ``π(x*)`` with u = v = 1 evaluated in the same batch; ``u*`` may be
  empty (then the reported ratio is π(x*, u = 0) / π(x*)).
* **Eq. 13** sums the raw attention rows of text queries over image keys (softmax of the
  unablated forward, not renormalised over image keys). θ and Δ enter with their signs (the
  paper writes the formula without clipping); ``clip_negative=True`` drops negative θ_n and Δ_i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from hearlib.method.attribution import Attribution, fit_attribution
from hearlib.method.masks import sample_token_masks

__all__ = ['CRITERIA', 'Curves', 'Evaluate', 'ImageTokens', 'NOT_REACHED', 'TextTokens', 'criterion_orders', 'curve_masks', 'engine_evaluator', 'head_vectors', 'image_attention_weight', 'image_tokens', 'min_heads', 'min_heads_sweep', 'minimal_head_set', 'random_order', 'ranking', 'sample_agnostic_heads', 'samples_without_important_head', 'share_without_important_head', 'single_head_delta', 'text_tokens', 'to_grid', 'top_k_mask', 'validation_curves', 'weighted_image_attention']

Evaluate = Callable[..., np.ndarray]
NOT_REACHED = 1          # min_heads returns len(curve) + NOT_REACHED when the threshold is never met
CRITERIA = ("HeAr", "Random", "Attention", "Causal")


def engine_evaluator(engine, sample, means, **kwargs) -> Evaluate:
    """Adapt ``engine.normalized(sample, means, heads, text, image, **kwargs)`` to the ``evaluate`` signature."""

    def evaluate(heads, text=None, image=None):
        return np.asarray(engine.normalized(sample, means, heads, text=text, image=image, **kwargs),
                          dtype=np.float64)

    return evaluate


def _call(evaluate: Evaluate, heads, text=None, image=None) -> np.ndarray:
    heads = np.asarray(heads, dtype=bool)
    if text is None and image is None:
        out = evaluate(heads)
    else:
        out = evaluate(heads, text=text, image=image)
    out = np.asarray(out, dtype=np.float64).ravel()
    if out.shape[0] != heads.shape[0]:
        raise ValueError(f"evaluate returned {out.shape[0]} values for {heads.shape[0]} masks")
    return out


# ----------------------------------------------------------------------------- single head (Fig. 7)

def single_head_delta(evaluate: Evaluate, n_heads: int) -> np.ndarray:
    """Δ_n = 1 − π(x_¬n) for every head: float64 [N], one evaluate call with N masks."""
    masks = ~np.eye(n_heads, dtype=bool)
    return 1.0 - _call(evaluate, masks)


def samples_without_important_head(deltas: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Per sample (rows of ``deltas`` [S, N]): whether no head has Δ_n > threshold."""
    deltas = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    return ~np.any(deltas > threshold, axis=1)


def share_without_important_head(deltas: np.ndarray, threshold: float = 0.05) -> float:
    """Share of samples (rows of ``deltas`` [S, N]) in which no head has Δ_n > threshold (paper: 0.80)."""
    return float(np.mean(samples_without_important_head(deltas, threshold)))


# ----------------------------------------------------------------------------- validation curves

@dataclass(frozen=True)
class Curves:
    """faithfulness[k-1] = π(top k intact, rest ablated); completeness[k-1] = π(top k ablated, rest intact)."""

    order: np.ndarray          # int [N], head indices, most important first
    faithfulness: np.ndarray   # float64 [N], k = 1..N
    completeness: np.ndarray   # float64 [N], k = 1..N

    def min_heads(self, faithfulness: float = 0.8, completeness: float = 0.2) -> tuple[int, int]:
        return (min_heads(self.faithfulness, faithfulness, "faithfulness"),
                min_heads(self.completeness, completeness, "completeness"))


def ranking(scores: np.ndarray) -> np.ndarray:
    """Head indices by descending score (stable: ties keep the lower index first; NaN last)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-keyed, kind="stable")
    if np.isnan(scores).any():
        nan_last = np.isnan(scores[order])
        order = np.concatenate([order[~nan_last], order[nan_last]])
    return order


def random_order(n_heads: int, rng: np.random.Generator) -> np.ndarray:
    """The Random criterion: a uniformly random permutation from an explicit generator."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    return rng.permutation(n_heads)


def criterion_orders(theta: np.ndarray | None = None, attention: np.ndarray | None = None,
                     delta: np.ndarray | None = None, rng: np.random.Generator | None = None,
                     n_heads: int | None = None) -> dict[str, np.ndarray]:
    """Orders for the four criteria (those whose input is given).

    HeAr: θ descending; Attention: image attention weight (Eq. 10, [L, H] or [N]) descending;
    Causal: single-head Δ_n descending; Random: ``rng.permutation(N)``.
    """
    orders: dict[str, np.ndarray] = {}
    sizes = [np.asarray(a).size for a in (theta, attention, delta) if a is not None]
    n = n_heads if n_heads is not None else (sizes[0] if sizes else None)
    if theta is not None:
        orders["HeAr"] = ranking(theta)
    if rng is not None:
        if n is None:
            raise ValueError("n_heads is needed for the Random order")
        orders["Random"] = random_order(n, rng)
    if attention is not None:
        orders["Attention"] = ranking(np.asarray(attention).ravel())
    if delta is not None:
        orders["Causal"] = ranking(delta)
    return orders


def curve_masks(order: np.ndarray) -> np.ndarray:
    """``bool [N, N]``: row k-1 keeps the top k heads of ``order`` intact (faithfulness masks).

    The completeness masks are the complement ``~curve_masks(order)``.
    """
    order = np.asarray(order, dtype=np.int64).ravel()
    n = order.size
    if not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError("order must be a permutation of 0..N-1")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank[None, :] < np.arange(1, n + 1)[:, None]


def validation_curves(evaluate: Evaluate, order: np.ndarray) -> Curves:
    """Faithfulness and completeness for k = 1..N: two evaluate calls of N masks each."""
    masks = curve_masks(order)
    return Curves(order=np.asarray(order, dtype=np.int64).copy(),
                  faithfulness=_call(evaluate, masks),
                  completeness=_call(evaluate, ~masks))


def min_heads(curve: np.ndarray, threshold: float, kind: str = "faithfulness") -> int:
    """Minimum k (1-based) with ``curve[k-1] > threshold`` (faithfulness) or ``< threshold`` (completeness).

    Returns ``len(curve) + 1`` when no k in 1..N qualifies (the "never reached" sentinel).
    """
    curve = np.asarray(curve, dtype=np.float64).ravel()
    if kind == "faithfulness":
        hit = curve > threshold
    elif kind == "completeness":
        hit = curve < threshold
    else:
        raise ValueError(f"kind must be 'faithfulness' or 'completeness', got {kind!r}")
    where = np.flatnonzero(hit)
    return int(where[0] + 1) if where.size else int(curve.size + NOT_REACHED)


def min_heads_sweep(curve: np.ndarray, thresholds: Sequence[float], kind: str = "faithfulness") -> np.ndarray:
    """:func:`min_heads` for each threshold (Fig. 5): int [len(thresholds)]."""
    return np.array([min_heads(curve, t, kind) for t in thresholds], dtype=np.int64)


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """``bool [N]`` with the top ``k`` heads by ``scores`` (order of :func:`ranking`) True."""
    order = ranking(scores)
    mask = np.zeros(order.size, dtype=bool)
    mask[order[:max(0, min(k, order.size))]] = True
    return mask


def minimal_head_set(theta: np.ndarray, evaluate: Evaluate | None = None, threshold: float = 0.8,
                     faithfulness: np.ndarray | None = None) -> np.ndarray:
    """x\\*: the smallest top-k set by θ whose faithfulness exceeds ``threshold`` (bool [N]).

    Give either ``evaluate`` (the HeAr faithfulness curve is computed, N masks) or the already
    computed HeAr ``faithfulness`` curve. If the threshold is never passed, x\\* is all heads.
    """
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if faithfulness is None:
        if evaluate is None:
            raise ValueError("give evaluate or the HeAr faithfulness curve")
        faithfulness = _call(evaluate, curve_masks(ranking(theta)))
    k = min_heads(faithfulness, threshold, "faithfulness")
    return top_k_mask(theta, min(k, theta.size))


# ----------------------------------------------------------------------------- text tokens (Fig. 4A, Table 3)

@dataclass(frozen=True)
class TextTokens:
    delta: np.ndarray        # float64 [P_txt], Δ_i = 1 − π(x*, u_¬i) / π(x*)
    pi_star: float           # π(x*) with u = v = 1
    u_star: np.ndarray       # bool [P_txt], Δ_i > threshold
    pi_u_star: float         # π(x*, u*)
    ratio: float             # π(x*, u*) / π(x*)   (paper, LLaVA-1.5-7B: 0.98)


def text_tokens(evaluate: Evaluate, x_star: np.ndarray, n_text: int, threshold: float = 0.05) -> TextTokens:
    """Δ_i for every text token under x\\*, u\\* = {i : Δ_i > threshold}, and π(x\\*, u\\*)/π(x\\*).

    Two evaluate calls: P_txt + 1 masks (u = 1 and each u_¬i), then one mask (u\\*).
    """
    x_star = np.asarray(x_star, dtype=bool).ravel()
    text = np.vstack([np.ones((1, n_text), dtype=bool), ~np.eye(n_text, dtype=bool)])
    heads = np.broadcast_to(x_star, (n_text + 1, x_star.size)).copy()
    values = _call(evaluate, heads, text=text)
    pi_star = float(values[0])
    delta = 1.0 - values[1:] / pi_star
    u_star = delta > threshold
    pi_u = float(_call(evaluate, x_star[None, :].copy(), text=u_star[None, :].copy())[0])
    return TextTokens(delta=delta, pi_star=pi_star, u_star=u_star, pi_u_star=pi_u, ratio=pi_u / pi_star)


# ----------------------------------------------------------------------------- image tokens (Fig. 4B, 4C)

@dataclass(frozen=True)
class ImageTokens:
    fit: Attribution         # fit.coef = θ^img, one value per image token
    masks: np.ndarray        # bool [M, P_img]
    pi: np.ndarray           # float64 [M], π(x*, u*, v)

    @property
    def theta(self) -> np.ndarray:
        return self.fit.coef


def image_tokens(evaluate: Evaluate, x_star: np.ndarray, u_star: np.ndarray, n_image: int, n_masks: int,
                 rng: np.random.Generator, ratio: float = 0.75, seed: int = 0) -> ImageTokens:
    """θ^img: the ElasticNet of :func:`hearlib.method.attribution.fit_attribution` from v to π(x\\*, u\\*, v).

    ``n_masks`` image masks ablating ``round(ratio · P_img)`` tokens each are drawn from ``rng``
    and evaluated in one call; ``seed`` drives the 80/20 split.
    """
    x_star = np.asarray(x_star, dtype=bool).ravel()
    u_star = np.asarray(u_star, dtype=bool).ravel()
    v = sample_token_masks(n_image, n_masks, ratio, rng)
    heads = np.broadcast_to(x_star, (n_masks, x_star.size)).copy()
    text = np.broadcast_to(u_star, (n_masks, u_star.size)).copy()
    pi = _call(evaluate, heads, text=text, image=v)
    return ImageTokens(fit=fit_attribution(v, pi, seed=seed), masks=v, pi=pi)


def image_attention_weight(text_to_image: np.ndarray) -> np.ndarray:
    """Eq. 10 from ``text_to_image`` [L, H, P_txt, P_img]: Σ_j A[i, j] over image keys, mean over text queries → [L, H]."""
    a = np.asarray(text_to_image, dtype=np.float64)
    return a.sum(axis=-1).mean(axis=-1)


def weighted_image_attention(x_star: np.ndarray, theta: np.ndarray, u_star: np.ndarray, delta: np.ndarray,
                             text_to_image: np.ndarray, grid: tuple[int, int] | None = None,
                             clip_negative: bool = False) -> np.ndarray:
    """Eq. 13: w_j = Σ_n x\\*_n θ_n Σ_i u\\*_i Δ_i A^n_{i,j}, over image columns j.

    ``text_to_image`` is the engine's record [L, H, P_txt, P_img] (head n = l·H + h). Returns
    float64 [P_img], or the grid (see :func:`to_grid`) when ``grid`` is given or ``grid=True``.
    """
    a = np.asarray(text_to_image, dtype=np.float64)
    n_layers, n_heads, n_text, _ = a.shape
    theta = np.asarray(theta, dtype=np.float64).ravel()
    delta = np.asarray(delta, dtype=np.float64).ravel()
    if clip_negative:
        theta = np.clip(theta, 0.0, None)
        delta = np.clip(delta, 0.0, None)
    head_weight = (np.asarray(x_star, dtype=bool).ravel() * theta).reshape(n_layers, n_heads)
    token_weight = np.asarray(u_star, dtype=bool).ravel() * delta
    if token_weight.size != n_text:
        raise ValueError(f"u*/Δ have {token_weight.size} entries, attention has {n_text} text queries")
    w = np.einsum("lh,i,lhij->j", head_weight, token_weight, a)
    if grid is None or grid is False:
        return w
    return to_grid(w, None if grid is True else grid)


# ----------------------------------------------------------------------------- head vectors (Fig. 10)

def head_vectors(thetas: np.ndarray, threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Heads with θ_n > threshold in at least one sample, and their vectors over samples.

    ``thetas`` [S, N] → (head indices int [K], vectors float64 [K, S]).
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    heads = np.flatnonzero(np.any(thetas > threshold, axis=0))
    return heads, thetas[:, heads].T.copy()



def sample_agnostic_heads(thetas: np.ndarray, threshold: float = 0.1, share: float = 0.5
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fig. 10's split of the heads with θ_n > threshold in at least one sample: sample-agnostic
    where θ_n > threshold in at least ``share`` of the samples, sample-specific otherwise.

    ``thetas`` [S, N] → (those heads int [K], the share of samples each is above the threshold in
    float64 [K], sample-agnostic or not bool [K])."""
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    heads, _ = head_vectors(thetas, threshold)
    used = (thetas[:, heads] > threshold).mean(axis=0) if len(heads) else np.zeros(0)
    return heads, used, used >= share


def to_grid(values: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Reshape per-image-token values [P_img] to the image grid (rows, cols), row-major.

    ``grid=None`` assumes a square grid (P_img a perfect square, as in LLaVA-1.5's 24×24);
    models with extra tokens (LLaVA-NeXT newlines) must pass the grid and drop the extras first.
    """
    values = np.asarray(values).ravel()
    if grid is None:
        side = int(round(math.sqrt(values.size)))
        if side * side != values.size:
            raise ValueError(f"{values.size} image tokens are not a square grid; pass grid=(rows, cols)")
        grid = (side, side)
    return values.reshape(grid)
