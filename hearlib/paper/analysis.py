"""The study's analyses, engine-agnostic (METHOD.md, sections "Single-head ablation" to "Robustness").

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
* **Clustering (Fig. 10)**: scipy ``average`` linkage on Euclidean distance of the head vectors
  (seaborn ``clustermap``'s default); samples (columns) are clustered the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from hearlib.method.attribution import Attribution, fit_attribution, pearson
from hearlib.method.masks import sample_token_masks

__all__ = [
    "Evaluate",
    "NOT_REACHED",
    "CRITERIA",
    "engine_evaluator",
    "single_head_delta",
    "share_without_important_head",
    "Curves",
    "ranking",
    "random_order",
    "criterion_orders",
    "curve_masks",
    "validation_curves",
    "min_heads",
    "min_heads_sweep",
    "top_k_mask",
    "minimal_head_set",
    "TextTokens",
    "text_tokens",
    "ImageTokens",
    "image_tokens",
    "image_attention_weight",
    "weighted_image_attention",
    "to_grid",
    "head_distribution",
    "relative_depth",
    "head_vectors",
    "HeadClusters",
    "cluster_head_vectors",
    "cosine_similarity",
    "paired_cosine",
    "mean_std",
    "pearson",
    "min_heads_per_criterion",
    "heldout_prediction",
    "head_name",
    "top_share",
    "ROLE_TOKENS",
    "token_text",
    "answer_in_tokens",
    "important_tokens",
    "describe_tokens",
    "only_role_and_final",
    "same_label_rate",
    "tsne_perplexity",
    "tsne_embedding",
    "cross_domain_cosines",
    "type_cosines",
    "layer_share",
    "specific_heads",
]

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


def share_without_important_head(deltas: np.ndarray, threshold: float = 0.05) -> float:
    """Share of samples (rows of ``deltas`` [S, N]) in which no head has Δ_n > threshold (paper: 0.80)."""
    deltas = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    return float(np.mean(~np.any(deltas > threshold, axis=1)))


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


# ----------------------------------------------------------------------------- head distribution, depth

def head_distribution(x_stars: np.ndarray, n_layers: int, n_heads: int) -> np.ndarray:
    """Share of samples whose x\\* contains head n, as an [L, H] map (Fig. 3C/12)."""
    x = np.atleast_2d(np.asarray(x_stars, dtype=bool))
    if x.shape[1] != n_layers * n_heads:
        raise ValueError(f"x* has {x.shape[1]} heads, expected {n_layers}·{n_heads}")
    return x.mean(axis=0).reshape(n_layers, n_heads)


def relative_depth(n_layers: int, n_heads: int) -> np.ndarray:
    """l / (L − 1) for every head n = l·H + h: float64 [N] (the colour of Fig. 3D/14)."""
    depth = np.arange(n_layers, dtype=np.float64) / max(1, n_layers - 1)
    return np.repeat(depth, n_heads)


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


@dataclass(frozen=True)
class HeadClusters:
    row_linkage: np.ndarray | None   # scipy linkage over heads (None if < 2 rows)
    col_linkage: np.ndarray | None   # scipy linkage over samples (None if < 2 columns)
    row_order: np.ndarray            # leaf order of the rows
    col_order: np.ndarray            # leaf order of the columns


def cluster_head_vectors(vectors: np.ndarray, method: str = "average", metric: str = "euclidean",
                         cluster_columns: bool = True) -> HeadClusters:
    """Hierarchical clustering of head vectors (rows) and samples (columns) for Fig. 10."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    vectors = np.asarray(vectors, dtype=np.float64)

    def cluster(matrix):
        if matrix.shape[0] < 2:
            return None, np.arange(matrix.shape[0])
        z = linkage(matrix, method=method, metric=metric, optimal_ordering=False)
        return z, leaves_list(z)

    row_z, row_order = cluster(vectors)
    if cluster_columns:
        col_z, col_order = cluster(vectors.T)
    else:
        col_z, col_order = None, np.arange(vectors.shape[1])
    return HeadClusters(row_z, col_z, np.asarray(row_order), np.asarray(col_order))


# ----------------------------------------------------------------------------- robustness (Table 1)

def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b) of two vectors; NaN if either is zero."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two [S, N] matrices (θ per sample under two prompts): float64 [S]."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    num = np.einsum("sn,sn->s", a, b)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """(mean, population std) ignoring NaN, as reported in Table 1 ("mean ± std")."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)), float(np.nanstd(values))


# ----------------------------------------------------------------------------- helpers behind the notebooks

def min_heads_per_criterion(entries: Sequence[Mapping], faithfulness: float = 0.8,
                            completeness: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Minimum heads per sample and criterion (Fig. 3A/11, 9A).

    ``entries``: per-sample validation results, each with ``"faithfulness"`` and
    ``"completeness"`` curves of shape [C, N] (one row per criterion). Returns
    ``(k_faithfulness, k_completeness)``, two int arrays [S, C]: :func:`min_heads` with
    faithfulness > ``faithfulness`` and completeness < ``completeness``.
    """
    kf = [[min_heads(row, faithfulness, "faithfulness") for row in np.atleast_2d(e["faithfulness"])]
          for e in entries]
    kc = [[min_heads(row, completeness, "completeness") for row in np.atleast_2d(e["completeness"])]
          for e in entries]
    return np.asarray(kf, dtype=np.int64), np.asarray(kc, dtype=np.int64)


def heldout_prediction(masks: np.ndarray, pi: np.ndarray, theta: np.ndarray, intercept: float,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """π and the linear prediction π̂ = θ·x + b on the held-out 20% of the masks (Fig. 2).

    The split is :func:`hearlib.method.attribution.train_test_indices` with the fit's ``seed``, so these
    are the masks the reported R² and Pearson were measured on. Returns ``(pi_test, pred_test)``.
    """
    from hearlib.method.attribution import train_test_indices

    masks = np.asarray(masks)
    pi = np.asarray(pi, dtype=np.float64).ravel()
    _, test = train_test_indices(len(pi), seed)
    pred = masks[test].astype(np.float64) @ np.asarray(theta, dtype=np.float64).ravel() + float(intercept)
    return pi[test], pred


def head_name(n: int, n_heads: int) -> str:
    """``"L{l}H{h}"`` for head index ``n = l·H + h``."""
    n = int(n)
    return f"L{n // n_heads}H{n % n_heads}"


def top_share(values: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the positive mass of ``values`` held by its top ``fraction`` (at least one entry).

    Used for θ^img: how concentrated image-token importance is (1 = all in the top 10% of tokens).
    0 when no value is positive.
    """
    pos = np.clip(np.asarray(values, dtype=np.float64).ravel(), 0.0, None)
    total = pos.sum()
    if total <= 0:
        return 0.0
    k = max(1, int(len(pos) * fraction))
    return float(np.sort(pos)[::-1][:k].sum() / total)


# ----------------------------------------------------------------------------- tokens in words (Fig. 4A, Fig. 8)

ROLE_TOKENS = ("ASSISTANT", "assistant", "Assistant")


def token_text(token: str) -> str:
    """A tokenizer piece as text: SentencePiece ``▁`` / byte-BPE ``Ġ`` markers and spaces stripped."""
    text = str(token).replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n").strip(" ")
    if text in ("<0x0A>", "\n"):
        return "\n"
    return text


def answer_in_tokens(answer: str, tokens: Sequence[str]) -> bool:
    """Whether ``answer`` is one of ``tokens`` (compared as :func:`token_text`, case-insensitive)."""
    want = str(answer).strip().lower()
    return any(token_text(t).lower() == want for t in tokens)


def important_tokens(delta: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Positions whose Δ_i exceeds ``threshold``: ``delta`` [P] or [S, P] (then the mean over samples)."""
    delta = np.asarray(delta, dtype=np.float64)
    mean = delta.mean(axis=0) if delta.ndim == 2 else delta.ravel()
    return np.flatnonzero(mean > threshold)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _token_words(token: str) -> str:
    text = token_text(token)
    if text == "":
        return "a space"
    if text == "\n":
        return "a line break"
    return f"'{text}'"


def describe_tokens(tokens: Sequence[str], positions: Sequence[int]) -> str:
    """The text tokens at ``positions`` in words, for a headline.

    E.g. ``"1 of 17 text tokens: ':' (the last)"`` or ``"2 of 17 text tokens: 'ASSISTANT' (3rd
    from last), ':' (the last)"``; ``"none of 17 text tokens"`` when ``positions`` is empty.
    A token's position is counted from the end of the prompt (where the paper's tokens sit) for
    the last three, from the start otherwise.
    """
    n = len(tokens)
    positions = [int(p) for p in positions]
    if not positions:
        return f"none of {n} text tokens"
    parts = []
    for p in positions:
        from_end = n - p
        if from_end == 1:
            where = "the last"
        elif from_end <= 3:
            where = f"{_ordinal(from_end)} from last"
        else:
            where = f"{_ordinal(p + 1)} of {n}"
        parts.append(f"{_token_words(tokens[p])} ({where})")
    noun = "text token" if n == 1 else "text tokens"
    return f"{len(positions)} of {n} {noun}: " + ", ".join(parts)


def only_role_and_final(tokens: Sequence[str], positions: Sequence[int], tail: int = 3) -> bool:
    """Whether every position is a role token (``ASSISTANT``) or among the last ``tail`` text tokens.

    The paper's finding for Fig. 4A. False when ``positions`` is empty.
    """
    positions = [int(p) for p in positions]
    n = len(tokens)
    return bool(positions) and all(p >= n - tail or token_text(tokens[p]) in ROLE_TOKENS for p in positions)


# ----------------------------------------------------------------------------- patterns (Fig. 3E, 9B, 9E)

def same_label_rate(x: np.ndarray, groups: Sequence) -> tuple[float, float]:
    """Share of samples whose nearest neighbour (cosine, rows of ``x``) has the same label, and chance.

    ``x`` [S, D] (θ per sample), ``groups`` [S] labels. Chance is the probability that a random
    other sample has the same label: Σ_g c_g (c_g − 1) / (S (S − 1)). Ties in similarity go to
    the lower index. Needs S ≥ 2.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    groups = np.asarray(groups)
    n = len(groups)
    if n < 2 or x.shape[0] != n:
        raise ValueError(f"need at least 2 samples with one label each, got {x.shape[0]} rows and {n} labels")
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(axis=1)
    _, counts = np.unique(groups, return_counts=True)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return float((groups[nn] == groups).mean()), chance


def tsne_perplexity(n_samples: int) -> float:
    """Perplexity for t-SNE on ``n_samples`` points: 30 (openTSNE's default) capped at (S − 1)/3, at least 2."""
    return float(max(2.0, min(30.0, (n_samples - 1) / 3.0)))


def tsne_embedding(x: np.ndarray, seed: int = 0, metric: str = "cosine",
                   perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE (openTSNE) of the rows of ``x`` (θ per sample; Fig. 3E/13, 9E): float64 [S, 2].

    Deterministic for a given ``seed`` (single thread, ``random_state=seed``). Perplexity:
    :func:`tsne_perplexity` unless given.
    """
    from openTSNE import TSNE

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    perplexity = tsne_perplexity(len(x)) if perplexity is None else float(perplexity)
    tsne = TSNE(perplexity=perplexity, metric=metric, random_state=seed, n_jobs=1, verbose=False)
    return np.asarray(tsne.fit(x), dtype=np.float64)


def cross_domain_cosines(thetas: np.ndarray, domains: Sequence, scenes: Sequence,
                         labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of θ between samples of different domains (Fig. 9): same scene vs same class only.

    Over every pair (i < j) with ``domains[i] != domains[j]``: the cosine goes to the first array
    when ``scenes[i] == scenes[j]`` (the same scene rendered in two styles), to the second when
    the scenes differ but ``labels[i] == labels[j]``. Pairs of different classes are skipped.
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    domains, scenes, labels = np.asarray(domains), np.asarray(scenes), np.asarray(labels)
    same, same_class = [], []
    for i in range(len(thetas)):
        for j in range(i + 1, len(thetas)):
            if domains[i] == domains[j]:
                continue
            if scenes[i] == scenes[j]:
                same.append(cosine_similarity(thetas[i], thetas[j]))
            elif labels[i] == labels[j]:
                same_class.append(cosine_similarity(thetas[i], thetas[j]))
    return np.asarray(same, dtype=np.float64), np.asarray(same_class, dtype=np.float64)


# ----------------------------------------------------------------------------- question types (beyond the paper)

def type_cosines(thetas: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cosine of θ between question types, per sample: [S, T, T] from ``{type: θ [S, N]}`` (the
    same S samples under every type, in the mapping's order). Diagonal 1; NaN for a zero θ."""
    stacked = np.stack([np.atleast_2d(np.asarray(t, dtype=np.float64)) for t in thetas.values()], axis=1)
    norms = np.linalg.norm(stacked, axis=2)
    unit = np.divide(stacked, norms[..., None], out=np.full_like(stacked, np.nan), where=norms[..., None] > 0)
    return np.einsum("stn,sun->stu", unit, unit)


def layer_share(thetas: np.ndarray, n_layers: int, n_heads: int) -> np.ndarray:
    """Share of each layer in the positive attribution, per sample: [S, L] rows summing to 1.

    max(θ_n, 0) summed over the heads of a layer, divided by the sample's total (a row of NaN
    when no head has a positive θ). Layer rows are heads ``l·H … l·H + H − 1`` (head_name order)."""
    pos = np.clip(np.atleast_2d(np.asarray(thetas, dtype=np.float64)), 0.0, None)
    if pos.shape[1] != n_layers * n_heads:
        raise ValueError(f"θ has {pos.shape[1]} heads, expected {n_layers}·{n_heads}")
    per_layer = pos.reshape(len(pos), n_layers, n_heads).sum(axis=2)
    total = per_layer.sum(axis=1, keepdims=True)
    return np.divide(per_layer, total, out=np.full_like(per_layer, np.nan), where=total > 0)


def specific_heads(mean_thetas: Mapping[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Heads specific to one question type: in that type's top ``k`` by mean θ (:func:`ranking`)
    and in no other type's top ``k``; per type, in its θ order."""
    tops = {name: ranking(np.asarray(theta, dtype=np.float64))[:int(k)] for name, theta in mean_thetas.items()}
    out = {}
    for name, top in tops.items():
        others = set().union(*(set(t.tolist()) for other, t in tops.items() if other != name))
        out[name] = np.asarray([n for n in top.tolist() if n not in others], dtype=np.int64)
    return out
