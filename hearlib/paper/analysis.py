"""The study's aggregates over samples, engine-agnostic (METHOD.md, "Head distribution" to
"Robustness"), and the helpers behind the notebooks' figures and tables.

The per-sample effects (single-head ablation, validation curves, x*, text and image tokens) are
:mod:`hearlib.method.effects`; a notebook imports both (``from hearlib.method import effects as EF``,
``from hearlib.paper import analysis as A``).

Choices where METHOD.md is silent (the project's):

* **Clustering (Fig. 10)**: scipy ``average`` linkage on Euclidean distance of the head vectors
  (seaborn ``clustermap``'s default); samples (columns) are clustered the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from hearlib.method.effects import min_heads, ranking

__all__ = ['head_distribution', 'relative_depth', 'HeadClusters', 'cluster_head_vectors', 'cosine_similarity', 'paired_cosine', 'mean_std', 'min_heads_per_criterion', 'heldout_prediction', 'head_name', 'top_share', 'token_text', 'answer_in_tokens', 'important_tokens', 'describe_tokens', 'only_role_and_final', 'same_label_rate', 'same_label_hits', 'bootstrap_interval', 'tsne_perplexity', 'tsne_embedding', 'cross_domain_cosines', 'type_cosines', 'layer_share', 'specific_heads', 'ROLE_TOKENS']


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


# ----------------------------------------------------------------------------- head clusters (Fig. 10)

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

def same_label_hits(x: np.ndarray, groups: Sequence) -> np.ndarray:
    """Per sample (rows of ``x`` [S, D], θ per sample): whether its nearest neighbour (cosine) has the same
    label. Ties in similarity go to the lower index. Needs S ≥ 2."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    groups = np.asarray(groups)
    n = len(groups)
    if n < 2 or x.shape[0] != n:
        raise ValueError(f"need at least 2 samples with one label each, got {x.shape[0]} rows and {n} labels")
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    return groups[sim.argmax(axis=1)] == groups


def same_label_rate(x: np.ndarray, groups: Sequence) -> tuple[float, float]:
    """Share of samples whose nearest neighbour (cosine, rows of ``x``) has the same label, and chance.

    ``x`` [S, D] (θ per sample), ``groups`` [S] labels. Chance is the probability that a random
    other sample has the same label: Σ_g c_g (c_g − 1) / (S (S − 1)). Ties in similarity go to
    the lower index. Needs S ≥ 2.
    """
    hits = same_label_hits(x, groups)
    n = len(hits)
    _, counts = np.unique(np.asarray(groups), return_counts=True)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return float(hits.mean()), chance


def bootstrap_interval(per_sample, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (scipy.stats.bootstrap) of the mean of ``per_sample`` values, resampling
    samples: how far a number measured on these samples could move on others. NaNs are left out; (nan, nan)
    with fewer than two values; a constant sample gives its value at both ends."""
    from scipy.stats import bootstrap

    values = np.asarray(per_sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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
