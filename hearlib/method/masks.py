"""Random ablation masks with an exact ablated count, and stable per-sample seeds.

Masks use ``True`` = intact (the engine's convention). Every row of a mask matrix ablates
*exactly* ``n_ablated(n, ratio)`` positions, the subset chosen uniformly among all subsets of
that size (METHOD.md, "Head attribution").

Determinism: every function takes an explicit :class:`numpy.random.Generator`; nothing reads
global random state. Rows are drawn in order from the generator's stream, so the first ``m``
rows of a draw of ``M`` rows are the rows a draw of ``m`` would give (drawing in chunks gives
the same masks as drawing at once). This is what lets ``attribution.r2_by_mask_count`` treat a
prefix of the masks as "what we would have had with fewer masks".

Seeds per sample come from :func:`sample_seed`: a SHA-256 of the sample id (and a stream name)
mixed with the study seed through :class:`numpy.random.SeedSequence`; Python's ``hash()`` is
never used (it is salted per process).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from hearlib.errors import UserError

__all__ = [
    "n_ablated",
    "sample_masks",
    "sample_head_masks",
    "sample_token_masks",
    "sample_seed",
    "sample_rng",
    "parse_batch_size",
]

# Bumped whenever a change to this module would draw other masks for the same seed; it enters
# every stored record's key (hearlib.records.stages), so old records are never read as new ones.
SAMPLER_VERSION = 1

# Rows drawn per block: keeps the temporary float matrix small for M = 10,000 and N in the
# thousands, without changing the result (see module docstring).
_BLOCK_ROWS = 1024


def n_ablated(n: int, ratio: float) -> int:
    """Number of positions ablated per mask: ``round(ratio · n)``, halves rounded *up*.

    Python's ``round`` rounds halves to even (``round(2.5) == 2``); the paper says nothing on
    ties, so the project rounds them up, the reading of "p·N rounded". For the paper's settings
    (p = 0.75, N a multiple of 4) there is no tie.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return min(n, int(math.floor(ratio * n + 0.5)))


def sample_masks(n: int, n_masks: int, ratio: float = 0.75, rng: np.random.Generator | None = None) -> np.ndarray:
    """``bool [n_masks, n]``, True = intact, each row with exactly ``n_ablated(n, ratio)`` False.

    The ablated positions of a row are the ``k`` smallest of ``n`` i.i.d. uniform draws, i.e. a
    uniformly random ``k``-subset.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be an explicit numpy.random.Generator (e.g. np.random.default_rng(seed))")
    if n_masks < 0:
        raise ValueError(f"n_masks must be >= 0, got {n_masks}")
    k = n_ablated(n, ratio)
    out = np.ones((n_masks, n), dtype=bool)
    if k == 0 or n_masks == 0:
        return out
    for start in range(0, n_masks, _BLOCK_ROWS):
        stop = min(n_masks, start + _BLOCK_ROWS)
        keys = rng.random((stop - start, n))
        ablated = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(np.arange(n), (stop - start, n))
        np.put_along_axis(out[start:stop], ablated, False, axis=1)
    return out


def sample_head_masks(n_heads: int, n_masks: int, ratio: float = 0.75,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Head masks x: ``bool [n_masks, n_heads]``; exactly ``round(ratio·N)`` heads ablated per row."""
    return sample_masks(n_heads, n_masks, ratio, rng)


def sample_token_masks(n_tokens: int, n_masks: int, ratio: float = 0.75,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Image-token masks v: ``bool [n_masks, P_img]``; exactly ``round(ratio·P)`` tokens ablated per row."""
    return sample_masks(n_tokens, n_masks, ratio, rng)


def sample_seed(seed: int, sample_id, stream: str = "") -> int:
    """A 64-bit seed derived stably from ``(seed, sample_id, stream)``.

    ``sample_id`` is turned into text (``str``), hashed with SHA-256, and the digest's words are
    given with ``seed`` to :class:`numpy.random.SeedSequence`. The result is the same on every
    machine, process and Python version. ``stream`` separates independent uses for one sample
    (e.g. ``"heads"``, ``"image"``, ``"random-order"``) so they never share random numbers.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    digest = hashlib.sha256(f"{sample_id}\x1f{stream}".encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()
    sequence = np.random.SeedSequence([int(seed), *words])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def sample_rng(seed: int, sample_id, stream: str = "") -> np.random.Generator:
    """``np.random.default_rng(sample_seed(seed, sample_id, stream))``."""
    return np.random.default_rng(sample_seed(seed, sample_id, stream))


def parse_batch_size(value) -> int | str:
    """A mask batch size: a positive integer, or ``"auto"`` (see :meth:`hearlib.method.engine.Engine.logits`)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or (isinstance(value, float) and value != size):
        raise UserError(f"batch size must be a positive integer or 'auto', got {value!r}")
    return size
