"""The fast path: the ablated logit computed from the text tokens only.

The prefix and image keys/values come from the sample's recorded forward and are shared by every
mask of a batch; attention for a text query runs over [prefix | image (own or mean) | text] in
blocks. Masks that agree on their first layers share those layers' rows
(:func:`shared_head_prefixes`), and the last layer computes the last position only. The premise,
that no prefix or image position attends to a text position, is checked per sample by
:meth:`hearlib.method.engine.Engine.fast_path_problem`.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from hearlib.method.plans_common import Plan, expand_heads, keep_mask

if TYPE_CHECKING:
    from hearlib.method.means import MeanKV
    from hearlib.method.samples import Sample


@dataclass
class FastLayer:
    prefix_k: torch.Tensor   # [H, P0, D]  prefix + image keys of the sample, per query head
    prefix_v: torch.Tensor
    mean_k: torch.Tensor     # [H, P_img, D]
    value_shift: torch.Tensor  # [H, P_img, D]  mean value − own value at the image positions
    prefix_blocked: torch.Tensor  # [T, P0]  True where the text query may not read the prefix key
    text_blocked: torch.Tensor    # [T, T]   the same among the text tokens (the model's mask)


def fast_layers(sample: "Sample", means: "MeanKV", n_heads: int) -> list[FastLayer]:
    """The fast path's per-layer tensors for ``sample`` under ``means``: the recorded prefix and image
    keys/values expanded to ``n_heads`` query heads, the mean keys, the shift from own to mean values
    at the image positions and the recorded mask of the text queries.

    Built once per (sample, means) and kept on ``sample.recorded`` (the means compared by identity);
    the sample must have been recorded (:meth:`hearlib.method.engine.Engine.record`)."""
    recorded = sample.recorded
    if recorded is None:
        raise ValueError("the sample has no recorded forward: run Engine.record first")
    cached = recorded.fast_layers
    if cached is not None and cached[0] is means:
        return cached[1]
    img, ts = sample.image_positions, sample.text_start
    layers = []
    for l, (keys, values, blocked) in enumerate(zip(recorded.prefix_k, recorded.prefix_v, recorded.text_blocked)):
        prefix_k = expand_heads(keys, n_heads).contiguous()
        prefix_v = expand_heads(values, n_heads).contiguous()
        mean_k = expand_heads(means.k[l], n_heads).to(prefix_k).contiguous()
        mean_v = expand_heads(means.v[l], n_heads).to(prefix_v)
        layers.append(FastLayer(prefix_k, prefix_v, mean_k, (mean_v - prefix_v[:, img]).contiguous(),
                                blocked[:, :ts].contiguous(), blocked[:, ts:].contiguous()))
    recorded.fast_layers = (means, layers)
    return layers


class FastPlan(Plan):
    """Text tokens only, a batch of masks at once, prefix/image K/V shared by the batch."""

    def __init__(self, layers: Sequence[FastLayer], image_slice: slice | torch.Tensor,
                 heads: torch.Tensor, text: torch.Tensor | None, image: torch.Tensor | None):
        self.layers, self.image_slice = layers, image_slice
        self.heads, self.text, self.image = heads, text, image
        self.rows: torch.Tensor | None = None     # the batch rows the current layer computes (None: all)
        self.last_query_layer: int | None = None  # the layer that computes the last text position only

    @classmethod
    def for_sample(cls, sample: "Sample", means: "MeanKV", n_heads: int, heads: torch.Tensor,
                   text: torch.Tensor | None, image: torch.Tensor | None) -> "FastPlan":
        """The plan for a batch of masks on a recorded ``sample``: its :func:`fast_layers` under
        ``means`` and its image positions (a slice where they are contiguous)."""
        img = sample.image_positions
        first, last = int(img[0]), int(img[-1])
        image_slice = slice(first, last + 1) if last - first + 1 == img.numel() else img
        return cls(fast_layers(sample, means, n_heads), image_slice, heads, text, image)

    def attend(self, module, layer, query, key, value, attn):
        if layer == self.last_query_layer and query.shape[2] > 1 and query.shape[0] >= MIN_ROWS:
            # only the last text position reaches the logits: the others get zeros in this layer
            # (heads of the value's size: multi-head latent attention's differs from the query's)
            batch, n_text, n_heads, dim = query.shape[0], query.shape[2], query.shape[1], value.shape[-1]
            out = query.new_zeros(batch, n_text, n_heads, dim)
            out[:, -1:] = self._attend(layer, query, key, value, attn, last_only=True)
            return out
        return self._attend(layer, query, key, value, attn)

    def _attend(self, layer, query, key, value, attn, last_only: bool = False):
        """Attention of the text queries (the last one only with ``last_only``) over prefix, image and text.

        The products among text positions are computed for every query even with ``last_only``:
        the CPU kernels round a product of one row differently from the same row in a larger one.
        The output has the value's head size, which multi-head latent attention (DeepSeek-V3: values of
        v_head_dim, keys of qk_nope_head_dim + qk_rope_head_dim) sets apart from the query's."""
        n_heads, n_all = query.shape[1], query.shape[2]
        queries = slice(-1, None) if last_only else slice(None)
        text_k, text_v = expand_heads(key, n_heads), expand_heads(value, n_heads)
        text_scores = torch.matmul(query, text_k.transpose(-1, -2)).transpose(0, 1)[:, :, queries]  # [H, B, T, T_all]
        query = query[:, :, queries]
        batch, _, n_text, dim = query.shape
        cached = self.layers[layer]
        n_prefix, n_image = cached.prefix_k.shape[1], cached.mean_k.shape[1]
        img = self.image_slice
        rows = query.transpose(0, 1).reshape(n_heads, batch * n_text, dim)          # [H, B·T, D]

        prefix_scores = torch.matmul(rows, cached.prefix_k.transpose(-1, -2)).view(n_heads, batch, n_text, n_prefix)
        mean_scores = torch.matmul(rows, cached.mean_k.transpose(-1, -2)).view(n_heads, batch, n_text, n_image)
        heads, text, image = (m if m is None or self.rows is None else m[self.rows]
                              for m in (self.heads, self.text, self.image))
        keep = keep_mask(layer, n_heads, heads, None if text is None else text[:, queries], image).transpose(0, 1)
        prefix_scores[..., img] = torch.where(keep, prefix_scores[..., img], mean_scores)   # keep: [H, B, T|1, P|1]

        # The text rows of the recorded full-sequence mask, not the mask of this text-only forward.
        scores = attn.scores(torch.cat([prefix_scores, text_scores], dim=-1))
        blocked = torch.cat([cached.prefix_blocked[queries], cached.text_blocked[queries]], dim=-1)
        scores = scores.masked_fill(blocked, float("-inf"))
        probs = scores.softmax(-1).to(query.dtype)
        prefix_probs, text_probs = probs[..., :n_prefix], probs[..., n_prefix:]

        out = torch.matmul(prefix_probs.reshape(n_heads, batch * n_text, n_prefix), cached.prefix_v)
        mean_probs = prefix_probs[..., img] * (~keep)
        out += torch.matmul(mean_probs.reshape(n_heads, batch * n_text, n_image), cached.value_shift)
        if last_only:                                   # the text product at its full size (see above)
            every = text_probs.new_zeros(n_heads, batch, n_all, n_all)
            every[:, :, -1:] = text_probs
            text_out = torch.matmul(every, text_v.transpose(0, 1))[:, :, -1:]
        else:
            text_out = torch.matmul(text_probs, text_v.transpose(0, 1))
        out = out.view(n_heads, batch, n_text, cached.prefix_v.shape[-1]) + text_out
        return out.permute(1, 2, 0, 3).contiguous()                                   # [B, T, H, D]


# The CPU's matrix kernels compute a row of a product with fewer than about 12 rows differently
# (another summation order) from the same row inside a larger product. The fast path computes
# fewer rows (grouped masks, the last position) only where every product keeps at least this many,
# so its values are bit for bit those of every mask through every layer at every position.
MIN_ROWS = 16


def shared_head_prefixes(heads: torch.Tensor, n_heads: int, n_layers: int, *, n_text: int = 1,
                         max_fraction: float = 0.75, min_batch: int = 16
                         ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per decoder layer l, the groups of masks that agree on every head of layers 0..l.

    The text tokens enter the decoder with the same hidden states under every mask, so masks that
    agree on the heads of layers 0..l leave layer l with the same hidden states: layer l needs to
    run once per group. Each entry is ``(first, group)``, the first row of each group and the group
    of each row, or ``None`` where grouping saves too little (more than ``max_fraction`` of the
    rows are distinct; every later layer then too) or would leave fewer than :data:`MIN_ROWS`
    rows (groups × ``n_text`` text positions) in the layer's products."""
    batch = heads.shape[0]
    groups: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
    if batch < min_batch:
        return groups
    device = heads.device
    weights = 2 ** torch.arange(n_heads, device=device, dtype=torch.int64)
    codes = torch.zeros(batch, dtype=torch.int64, device=device)
    for layer in range(n_layers):
        if (layer + 1) * n_heads > 62:                    # the codes are int64
            break
        bits = heads[:, layer * n_heads:(layer + 1) * n_heads].long()
        codes = codes * (1 << n_heads) + (bits * weights).sum(1)
        unique, group = torch.unique(codes, return_inverse=True)
        if unique.numel() > max_fraction * batch:
            break
        if unique.numel() * n_text < MIN_ROWS:
            continue
        first = torch.full((unique.numel(),), batch, dtype=torch.int64, device=device)
        first.scatter_reduce_(0, group, torch.arange(batch, device=device), "amin")
        groups[layer] = (first, group)
    return groups


def _take_rows(value, rows: torch.Tensor, batch: int):
    """``value`` (a tensor, or a tuple of them) with the rows ``rows`` of its batch dimension,
    where its first dimension is the batch of ``batch`` masks; anything else unchanged."""
    if isinstance(value, tuple):
        return tuple(_take_rows(item, rows, batch) for item in value)
    if torch.is_tensor(value) and value.ndim >= 2 and value.shape[0] == batch:
        return value[rows]
    return value


@contextlib.contextmanager
def computed_once(layers: Sequence[torch.nn.Module], plan: FastPlan,
                   groups: Sequence[tuple[torch.Tensor, torch.Tensor] | None], batch: int):
    """Run each decoder layer once per group of :func:`shared_head_prefixes` (the rows stay grouped
    from layer to layer) and give the decoder every row again after the last layer. Each row's
    arithmetic is the same as in the full batch; the hooks are always removed."""
    current: list[torch.Tensor | None] = [None]        # group of each mask at the current layer, None: ungrouped
    last = len(layers) - 1

    def before(layer, module, args, kwargs):
        group = groups[layer]
        grouped = current[0]
        if group is None and grouped is None:
            plan.rows = None
            return None
        if group is None:                                  # ungroup: every row again
            hidden_rows, other_rows, plan.rows, current[0] = grouped, None, None, None
        else:
            first, current[0] = group
            hidden_rows = first if grouped is None else grouped[first]
            other_rows, plan.rows = first, first
        if args:
            args = (args[0][hidden_rows], *(_take_rows(a, other_rows, batch) if other_rows is not None else a
                                            for a in args[1:]))
        else:
            kwargs["hidden_states"] = kwargs["hidden_states"][hidden_rows]
        if other_rows is not None:
            kwargs = {k: v if k == "hidden_states" else _take_rows(v, other_rows, batch) for k, v in kwargs.items()}
        return args, kwargs

    def after_last(module, args, kwargs, output):
        grouped, current[0], plan.rows = current[0], None, None
        if grouped is None:
            return None
        if isinstance(output, tuple):
            return (output[0][grouped], *output[1:])
        return output[grouped]

    if all(group is None for group in groups):
        yield
        return
    handles = []
    try:
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(functools.partial(before, index), with_kwargs=True))
        handles.append(layers[last].register_forward_hook(after_last, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        plan.rows = None


# the decoder layer's feed-forward block, by the names transformers' decoders use
_FEED_FORWARD = ("mlp", "feed_forward")


@contextlib.contextmanager
def last_position_only(layer: torch.nn.Module, index: int, plan: FastPlan):
    """In the last decoder layer, compute the last text position only: its attention query (the
    plan) and its feed-forward block (a hook passes it that position; the residual sum
    broadcasts). The logits read nothing else; the other positions' states are left unfinished.
    Batches of fewer than :data:`MIN_ROWS` rows compute every position."""
    feed_forward = next((getattr(layer, name) for name in _FEED_FORWARD
                         if isinstance(getattr(layer, name, None), torch.nn.Module)), None)

    def last(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[0] < MIN_ROWS:                  # as the plan: every position (see MIN_ROWS)
            return None
        if args:
            return (hidden[:, -1:], *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden[:, -1:]}

    plan.last_query_layer = index
    handle = feed_forward.register_forward_pre_hook(last, with_kwargs=True) if feed_forward is not None else None
    try:
        yield
    finally:
        plan.last_query_layer = None
        if handle is not None:
            handle.remove()

