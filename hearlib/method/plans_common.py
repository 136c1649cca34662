"""What the attention plans share (:mod:`~hearlib.method.attention`, :mod:`~hearlib.method.fastpath`,
:mod:`~hearlib.method.generation_hook`): the base class of a plan, the expansion of key/value heads to
query heads, and the mask of the image reads a batch of masks keeps.

Masks use 1 (True) = intact; head ``n = l·H + h``.
"""
from __future__ import annotations

import torch


class Plan:
    """What one decoder layer's attention does inside an :func:`hearlib.method.attention.ablation`
    context: ``attend`` gets the module, its layer index, query/key/value [B, heads, S, D] and the
    model's mask, scale and soft-cap (:class:`hearlib.method.attention.Attn`), and returns
    [B, S, H, D]."""

    def attend(self, module, layer, query, key, value, attn) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def expand_heads(states: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat key/value heads so that each query head has its own (GQA groups expanded)."""
    n_kv = states.shape[-3]
    if n_kv == n_heads:
        return states
    return states.repeat_interleave(n_heads // n_kv, dim=-3)


def keep_mask(layer: int, n_heads: int, heads: torch.Tensor, text: torch.Tensor | None,
              image: torch.Tensor | None) -> torch.Tensor:
    """keep[b, h, t, j] = x[b, l·H + h] · u[b, t] · v[b, j], broadcastable ([B, H, T|1, P|1])."""
    keep = heads[:, layer * n_heads:(layer + 1) * n_heads][:, :, None, None]
    if text is not None:
        keep = keep & text[:, None, :, None]
    if image is not None:
        keep = keep & image[:, None, None, :]
    return keep
