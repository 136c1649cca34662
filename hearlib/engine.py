"""The ablation engine: mean ablation of image-to-text attention, per query head.

One attention function, ``"hear"``, is registered with transformers'
``AttentionInterface`` and installed on the decoder of a vision-language model. Outside an
:func:`ablation` context it is plain causal attention (SDPA), so the model behaves as
shipped. Inside one, a *plan* decides what each decoder layer's attention does:

* :class:`RecordPlan` – the unablated forward; keeps the prefix/image keys and values, the
  attention of text queries over image keys (Eq. 10, 13) and each head's output at the last
  position (logit lens).
* :class:`LiteralPlan` – the paper read literally: a full-sequence forward in which text
  query ``t`` of head ``n`` reads the mean key and value at image position ``j`` unless
  ``x_n · u_t · v_j = 1``. The reference for tests.
* :class:`FastPlan` – the same quantity computed from text tokens only: the prefix and
  image keys/values come from the recorded forward and are shared by every mask in the
  batch; attention for a text query runs over [prefix | image (own or mean) | text] in blocks.

Every plan attends under the model's own mask (the boolean mask transformers builds for the
layer: causal, bidirectional image blocks, sliding windows, a prefix-LM's bidirectional prompt),
scale and attention soft-cap. The fast path's premise, that no prefix or image position attends
to a text position, is read from the recorded masks of each sample (:meth:`Engine.fast_path_problem`);
where it fails the literal path runs instead, with a warning that says why.

Masks use 1 (True) = intact; head ``n = l·H + h``.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from hearlib.errors import UnsupportedModel, UserError
from hearlib.families import family_of
from hearlib.masks import parse_batch_size
from hearlib.prompts import PAPER_PROMPT

if TYPE_CHECKING:
    from hearlib.means import MeanKV

ATTENTION_NAME = "hear"
# batch_size="auto": the mask batch sizes timed on the CPU (the first call with enough masks
# runs one batch of each and keeps the fastest) and the size used on an accelerator
AUTO_BATCH_SIZES = (128, 256, 512, 1024)
AUTO_ACCELERATOR_BATCH = 256

_ACTIVE_PLAN: contextvars.ContextVar["_Plan | None"] = contextvars.ContextVar("hear_plan", default=None)


def hear_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """The registered attention function: the model's own attention (its mask, scale and soft-cap)
    unless an ablation plan is active, then the plan's."""
    if kwargs.get("s_aux") is not None:
        raise UnsupportedModel("attention sinks (s_aux) are not supported by hearlib's attention plans")
    plan = _ACTIVE_PLAN.get()
    layer = getattr(module, "layer_idx", None)
    if plan is None or layer is None:
        if softcap is None:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                          dropout=dropout, **kwargs)
        return _plain_attention(query, key, value, attention_mask, scaling, softcap), None
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    return plan.attend(module, layer, query, key, value, _Attn(attention_mask, scaling, softcap)), None


def hear_mask(*args, **kwargs):
    """transformers' SDPA mask, always materialised (never ``None`` for "plain causal"), so the
    plans read the mask the model really uses: [B, 1, Q, K] booleans, True = may attend."""
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(ATTENTION_NAME, hear_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, hear_mask)


@dataclass
class _Attn:
    """What the model passes to its attention function besides q, k, v: mask, scale, soft-cap."""

    mask: torch.Tensor | None
    scaling: float
    softcap: float | None = None

    def blocked(self, n_query: int, n_key: int, device) -> torch.Tensor:
        """Boolean [..., n_query, n_key], True where a query may not attend; plain causal if the
        model passed no mask."""
        return _blocked(self.mask, n_query, n_key, device)

    def scores(self, raw: torch.Tensor) -> torch.Tensor:
        """Scaled (and soft-capped) float attention logits from q·k."""
        scores = raw.float() * self.scaling
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        return scores


def _blocked(mask, n_query: int, n_key: int, device) -> torch.Tensor:
    if mask is None:
        return _causal_scores_mask(n_query, n_key, device)
    if mask.dtype == torch.bool:
        blocked = ~mask
    else:                                   # an additive float mask: -inf (or dtype min) = blocked
        blocked = mask <= torch.finfo(mask.dtype).min / 2
    return blocked[..., -n_query:, -n_key:]


def _plain_attention(query, key, value, mask, scaling, softcap):
    """Eager attention with the model's mask and soft-cap (SDPA has no soft-cap)."""
    n_heads, seq = query.shape[1], query.shape[2]
    attn = _Attn(mask, scaling if scaling is not None else query.shape[-1] ** -0.5, softcap)
    keys, values = _expand_heads(key, n_heads), _expand_heads(value, n_heads)
    scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
    scores = scores.masked_fill(attn.blocked(seq, key.shape[-2], query.device), float("-inf"))
    return torch.matmul(scores.softmax(-1).to(values.dtype), values).transpose(1, 2).contiguous()


@contextlib.contextmanager
def ablation(plan: "_Plan") -> Iterator["_Plan"]:
    """Activate ``plan`` for every decoder attention call inside the block; always cleaned up."""
    token = _ACTIVE_PLAN.set(plan)
    try:
        yield plan
    finally:
        _ACTIVE_PLAN.reset(token)


def _expand_heads(states: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat key/value heads so that each query head has its own (GQA groups expanded)."""
    n_kv = states.shape[-3]
    if n_kv == n_heads:
        return states
    return states.repeat_interleave(n_heads // n_kv, dim=-3)


def _causal_scores_mask(n_query: int, n_key: int, device) -> torch.Tensor:
    """Boolean [n_query, n_key] mask, True where a query may not attend (future keys).
    Queries are the last ``n_query`` positions of the ``n_key`` long sequence."""
    offset = n_key - n_query
    q = torch.arange(n_query, device=device)[:, None] + offset
    k = torch.arange(n_key, device=device)[None, :]
    return k > q


def _own_aligned_memory(model) -> None:
    """Move every CPU parameter and buffer that does not start on a 64-byte boundary into memory
    of its own (torch's allocator aligns to 64 bytes).

    Weights loaded from safetensors stay in the file's memory map at the file's offsets; the CPU
    matrix kernels round differently for operands that are not 64-byte aligned (the per-head
    outputs and the logit lens moved by up to 2e-6), so a record depended on whether the model had
    been copied on load (``.to("cpu:0")`` under accelerate copies, ``.to("cpu")`` does not)."""
    with torch.no_grad():
        for tensors in (model.parameters(), model.buffers()):
            for tensor in tensors:
                if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
                    tensor.data = tensor.data.clone()


# ---------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------
class _Plan:
    def attend(self, module, layer, query, key, value, attn: _Attn) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class RecordPlan(_Plan):
    """Unablated attention under the model's mask that records what later forwards and analyses
    need, including which keys each text query may read and whether any prefix or image position
    reads a text position (the fast path's premise)."""

    def __init__(self, text_start: int, image_positions: torch.Tensor, *, keep_head_outputs: bool = True,
                 output_projection: str = "o_proj"):
        self.text_start = text_start
        self.image_positions = image_positions
        self.keep_head_outputs = keep_head_outputs
        self.output_projection = output_projection         # attribute of the attention module
        self.keys: dict[int, torch.Tensor] = {}          # [KVH, text_start, D], rotated
        self.values: dict[int, torch.Tensor] = {}
        self.text_to_image: dict[int, torch.Tensor] = {}  # [H, P_txt, P_img]
        self.head_outputs: dict[int, torch.Tensor] = {}   # [H, d_model]
        self.text_blocked: dict[int, torch.Tensor] = {}   # [P_txt, S] True = the text query may not read
        self.prefix_reads_text: dict[int, bool] = {}      # a prefix/image query reads a text key

    def attend(self, module, layer, query, key, value, attn):
        _, n_heads, seq, _ = query.shape
        ts = self.text_start
        self.keys[layer] = key[0, :, :ts].detach().clone()
        self.values[layer] = value[0, :, :ts].detach().clone()
        keys, values = _expand_heads(key, n_heads), _expand_heads(value, n_heads)
        blocked = attn.blocked(seq, seq, query.device)
        rows = blocked.reshape(-1, seq, seq)
        if rows.shape[0] != 1:
            raise UserError("the recorded forward must see one sample (a mask of batch 1)")
        self.text_blocked[layer] = rows[0, ts:].clone()
        self.prefix_reads_text[layer] = bool((~rows[0, :ts, ts:]).any())
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores.masked_fill_(blocked, float("-inf"))
        probs = scores.softmax(-1)
        out = torch.matmul(probs.to(values.dtype), values)                   # [1, H, S, D]
        text_rows = probs[0, :, self.text_start:]                             # [H, P_txt, S]
        self.text_to_image[layer] = text_rows[:, :, self.image_positions].detach().clone()
        if self.keep_head_outputs:
            o_weight = getattr(module, self.output_projection).weight         # [d_model, H*D]
            per_head = o_weight.view(o_weight.shape[0], n_heads, -1)          # [d_model, H, D]
            self.head_outputs[layer] = torch.einsum("hd,mhd->hm", out[0, :, -1].to(per_head.dtype), per_head).detach()
        return out.transpose(1, 2).contiguous()


class KeyValuePlan(_Plan):
    """Unablated attention (the model's mask) of a batch of sequences that keeps only the keys (rotated) and
    values at the image positions: what the means need, for many reference images in one forward.
    Same arithmetic as :class:`RecordPlan`, row by row."""

    def __init__(self, image_positions: torch.Tensor):
        self.image_positions = image_positions
        self.keys: dict[int, torch.Tensor] = {}          # [B, KVH, P_img, D]
        self.values: dict[int, torch.Tensor] = {}

    def attend(self, module, layer, query, key, value, attn):
        _, n_heads, seq, _ = query.shape
        self.keys[layer] = key[:, :, self.image_positions].detach().clone()
        self.values[layer] = value[:, :, self.image_positions].detach().clone()
        keys, values = _expand_heads(key, n_heads), _expand_heads(value, n_heads)
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores.masked_fill_(attn.blocked(seq, seq, query.device), float("-inf"))
        out = torch.matmul(scores.softmax(-1).to(values.dtype), values)
        return out.transpose(1, 2).contiguous()


def _keep_mask(layer: int, n_heads: int, heads: torch.Tensor, text: torch.Tensor | None,
               image: torch.Tensor | None) -> torch.Tensor:
    """keep[b, h, t, j] = x[b, l·H + h] · u[b, t] · v[b, j], broadcastable ([B, H, T|1, P|1])."""
    keep = heads[:, layer * n_heads:(layer + 1) * n_heads][:, :, None, None]
    if text is not None:
        keep = keep & text[:, None, :, None]
    if image is not None:
        keep = keep & image[:, None, None, :]
    return keep


class LiteralPlan(_Plan):
    """Full-sequence forward; text queries read per-(head, query, image token) own or mean K/V."""

    def __init__(self, text_start: int, image_positions: torch.Tensor, means: "MeanKV",
                 heads: torch.Tensor, text: torch.Tensor | None, image: torch.Tensor | None):
        self.text_start, self.image_positions, self.means = text_start, image_positions, means
        self.heads, self.text, self.image = heads, text, image

    def attend(self, module, layer, query, key, value, attn):
        batch, n_heads, seq, _ = query.shape
        ts, img = self.text_start, self.image_positions
        keys, values = _expand_heads(key, n_heads), _expand_heads(value, n_heads)
        mean_k = _expand_heads(self.means.k[layer], n_heads).to(query)        # [H, P_img, D]
        mean_v = _expand_heads(self.means.v[layer], n_heads).to(query)
        keep = _keep_mask(layer, n_heads, self.heads, self.text, self.image)
        keep = keep.expand(batch, n_heads, seq - ts, img.numel())[..., None]  # [B, H, T, P, 1]

        # The keys and values each text query reads at the image positions.
        own_k, own_v = keys[:, :, img][:, :, None], values[:, :, img][:, :, None]   # [B, H, 1, P, D]
        text_k = torch.where(keep, own_k, mean_k[None, :, None])                    # [B, H, T, P, D]
        text_v = torch.where(keep, own_v, mean_v[None, :, None])

        raw = torch.matmul(query, keys.transpose(-1, -2))
        raw[:, :, ts:, img] = torch.einsum("bhtd,bhtpd->bhtp", query[:, :, ts:], text_k)
        scores = attn.scores(raw).masked_fill(attn.blocked(seq, seq, query.device), float("-inf"))
        probs = scores.softmax(-1).to(values.dtype)

        out = torch.matmul(probs, values)
        text_probs = probs[:, :, ts:].clone()
        image_probs = text_probs[..., img]
        text_probs[..., img] = 0
        out[:, :, ts:] = torch.matmul(text_probs, values) + torch.einsum("bhtp,bhtpd->bhtd", image_probs, text_v)
        return out.transpose(1, 2).contiguous()


@dataclass
class _FastLayer:
    prefix_k: torch.Tensor   # [H, P0, D]  prefix + image keys of the sample, per query head
    prefix_v: torch.Tensor
    mean_k: torch.Tensor     # [H, P_img, D]
    value_shift: torch.Tensor  # [H, P_img, D]  mean value − own value at the image positions
    prefix_blocked: torch.Tensor  # [T, P0]  True where the text query may not read the prefix key
    text_blocked: torch.Tensor    # [T, T]   the same among the text tokens (the model's mask)


class FastPlan(_Plan):
    """Text tokens only, a batch of masks at once, prefix/image K/V shared by the batch."""

    def __init__(self, layers: Sequence[_FastLayer], image_slice: slice | torch.Tensor,
                 heads: torch.Tensor, text: torch.Tensor | None, image: torch.Tensor | None):
        self.layers, self.image_slice = layers, image_slice
        self.heads, self.text, self.image = heads, text, image
        self.rows: torch.Tensor | None = None     # the batch rows the current layer computes (None: all)
        self.last_query_layer: int | None = None  # the layer that computes the last text position only

    def attend(self, module, layer, query, key, value, attn):
        if layer == self.last_query_layer and query.shape[2] > 1 and query.shape[0] >= MIN_ROWS:
            # only the last text position reaches the logits: the others get zeros in this layer
            batch, n_text, n_heads, dim = query.shape[0], query.shape[2], query.shape[1], query.shape[3]
            out = query.new_zeros(batch, n_text, n_heads, dim)
            out[:, -1:] = self._attend(layer, query, key, value, attn, last_only=True)
            return out
        return self._attend(layer, query, key, value, attn)

    def _attend(self, layer, query, key, value, attn, last_only: bool = False):
        """Attention of the text queries (the last one only with ``last_only``) over prefix, image and text.

        The products among text positions are computed for every query even with ``last_only``:
        the CPU kernels round a product of one row differently from the same row in a larger one."""
        n_heads, n_all = query.shape[1], query.shape[2]
        queries = slice(-1, None) if last_only else slice(None)
        text_k, text_v = _expand_heads(key, n_heads), _expand_heads(value, n_heads)
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
        keep = _keep_mask(layer, n_heads, heads, None if text is None else text[:, queries], image).transpose(0, 1)
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
        out = out.view(n_heads, batch, n_text, dim) + text_out
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
def _computed_once(layers: Sequence[torch.nn.Module], plan: FastPlan,
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
def _last_position_only(layer: torch.nn.Module, index: int, plan: FastPlan):
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


# ---------------------------------------------------------------------------------------
# Samples and records
# ---------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One (image, prompt, answer) prepared by the model's own processor and chat template."""

    inputs: dict
    prompt: str
    answer: str | None
    answer_id: int | None
    answer_tokens: list[str]
    image_positions: torch.Tensor
    text_start: int
    seq_len: int
    prefix_hash: str
    sample_id: str = ""
    image_size: tuple[int, int] | None = None   # (width, height) of the image given to the processor
    _state: dict = field(default_factory=dict, repr=False)

    @property
    def n_text(self) -> int:
        return self.seq_len - self.text_start

    @property
    def n_image(self) -> int:
        return int(self.image_positions.numel())


@dataclass
class Record:
    """What one unablated forward tells about a sample."""

    logit: float                     # adjusted logit of the answer token
    predicted_id: int                # argmax at the last position
    image_attention: np.ndarray      # [L, H] Eq. 10
    text_to_image: np.ndarray        # [L, H, P_txt, P_img]
    head_outputs: np.ndarray         # [L, H, d_model]

    @property
    def correct(self) -> bool:
        return bool(self._answer_id is not None and self.predicted_id == self._answer_id)

    _answer_id: int | None = None


def _as_mask(mask, rows: int | None, cols: int, name: str, device) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(mask), device=device)
    if tensor.dtype != torch.bool:
        if not torch.all((tensor == 0) | (tensor == 1)):
            raise UserError(f"{name} mask must be boolean or 0/1")
        tensor = tensor.bool()
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[1] != cols or (rows is not None and tensor.shape[0] != rows):
        expected = f"[{rows if rows is not None else 'M'}, {cols}]"
        raise UserError(f"{name} mask has shape {tuple(tensor.shape)}, expected {expected}")
    return tensor


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------
class Engine:
    """Mean ablation of image-to-text attention on a transformers vision-language model.

    What it touches in the model (decoder, attention modules, output projection, final norm,
    unembedding, image token id) is found through the family's record
    (:func:`hearlib.families.family_of`); an unsupported ``model_type`` raises UnsupportedModel."""

    def __init__(self, model, processor, *, name: str | None = None,
                 resolution: tuple[int, int] | None = None):
        self.model = model.eval()
        _own_aligned_memory(model)          # records must not depend on where the weights were loaded
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.name = name or getattr(model.config, "_name_or_path", "") or model.config.model_type
        self.resolution = resolution
        self.family = family_of(model.config)
        self.decoder = self.family.decoder_of(model)
        self.lm_head = self.family.lm_head_of(model)
        self.final_norm = self.family.final_norm_of(model)
        text_config = self.family.text_config_of(model.config)
        self.n_layers = text_config.num_hidden_layers
        self.n_heads = text_config.num_attention_heads
        self.n_kv_heads = getattr(text_config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // self.n_heads
        self.image_token_id = self.family.image_token_id_of(model.config)
        # the fast path runs a layer once per group of masks that agree on its heads and every
        # earlier layer's (shared_head_prefixes); False runs every mask through every layer
        self.share_prefixes = True
        # and its last layer computes the last text position only (the only one the logits read)
        self.last_position_only = True
        self._tuned_batch: int | None = None            # batch_size="auto": the fastest size measured
        # Gemma-2-style decoders soft-cap the final logits; the fast path and the logit lens unembed
        # themselves, so they apply the same cap (None: no cap).
        self._final_softcap = getattr(text_config, "final_logit_softcapping", None)
        # A wrapper that scales its logits (Cohere Compass: ``logits * self.logit_scale``) gets
        # the same scale where the engine unembeds itself. Read from the wrapper, not the text config:
        # Aya Vision's Cohere 2 text config has a logit_scale that its wrapper never applies.
        self._logit_scale = getattr(model, "logit_scale", None)
        # Only the last position's logits are ever read: skip the unembedding of the others.
        self._last_only = ({"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters
                           else {})
        model.set_attn_implementation({self.family.text_config: ATTENTION_NAME})
        for layer_index, attention in enumerate(self.family.attention_modules(model)):
            if getattr(attention, "layer_idx", None) != layer_index:
                raise UserError(f"decoder layer {layer_index} has no matching layer_idx; unsupported attention module")
            self.family.output_projection_of(attention)     # UnsupportedModel if it has none
        self.load_report: dict | None = None      # set by hearlib.models.load_engine
        self.sanity: dict | None = None           # set by check_intact
        self._fingerprint: str | None = None
        if self.family.derived:
            self.check_derived()

    @torch.no_grad()
    def check_intact(self) -> dict:
        """Run once at load: the last position's logits of one prompt through hearlib's attention
        function (the recording plan every record's unablated forward uses) equal the model's own
        eager attention (≤ 1e-4 of the logits' scale in float32, 2e-2 in half precision). Catches an
        attention function or mask that silently changed; UnsupportedModel if they differ."""
        from PIL import Image

        side = self.resolution or (224, 224)
        ramp = np.linspace(0, 255, side[0] * side[1] * 3, dtype=np.float64).reshape(side[1], side[0], 3)
        sample = self.prepare(Image.fromarray(ramp.astype(np.uint8)))
        _, _, ours = self._recorded_forward(sample, keep_head_outputs=False)
        self.model.set_attn_implementation({self.family.text_config: "eager"})
        try:
            own = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        finally:
            self.model.set_attn_implementation({self.family.text_config: ATTENTION_NAME})
        difference = float((ours.float() - own.float()).abs().max())
        scale = max(1.0, float(own.float().abs().max()))
        tolerance = 1e-4 if self.dtype == torch.float32 else 2e-2
        self.sanity = {"max_abs_difference": difference, "logit_scale": scale, "tolerance": tolerance,
                       "ok": difference <= tolerance * scale}
        if not self.sanity["ok"]:
            raise UnsupportedModel(f"{self.name}: the unpatched logits through hearlib's attention differ from the "
                                   f"model's own eager attention by {difference:.3g} (scale {scale:.3g}); its "
                                   "attention or mask is not what hearlib expects")
        return self.sanity

    def weight_fingerprint(self) -> str:
        """A hash of every parameter's name, shape, dtype, sum and first values (computed once)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, parameter in self.model.named_parameters():
                flat = parameter.detach().reshape(-1)
                head = flat[:8].float().cpu().numpy().round(6).tolist()
                digest.update(repr((name, tuple(parameter.shape), str(parameter.dtype),
                                    round(float(flat.float().sum()), 3), head)).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def environment(self, method: str | None = None) -> dict:
        """What a result was computed with: library versions, device, dtype, engine path, attention
        implementation, the weights' fingerprint, the loading report and the load-time check."""
        from hearlib.models import versions

        return {**versions(), "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "method": method, "attention": f"{ATTENTION_NAME} (hearlib; the model's sdpa/eager when no plan)",
                "family": self.family.model_type, "weights": self.weight_fingerprint(),
                "load": self.load_report, "check": self.sanity}

    @torch.no_grad()
    def check_derived(self, n_masks: int = 3, seed: int = 0) -> None:
        """The check a derived record (:func:`hearlib.families.derived_family`) passes before use:
        on two random images, every head intact gives the model's own logit (≤ 1e-5 relative to
        the logits' scale) and the fast path equals the literal one on random masks (≤ 1e-4);
        UnsupportedModel says what failed."""
        from PIL import Image

        from hearlib.means import compute_means

        def refuse(what: str):
            raise UnsupportedModel(f"{self.family.model_type} is not registered and its derived record failed "
                                   f"the check on the loaded model: {what}; register the family "
                                   "(docs/ADDING_A_MODEL_FAMILY.md)")

        rng = np.random.default_rng(seed)
        side = self.resolution or (224, 224)
        images = [Image.fromarray(rng.integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)) for _ in range(2)]
        word = next((w for w in ("yes", "a", "the", "1") if self.answer_problem(w) is None), None)
        if word is None:
            refuse("no short answer word tokenizes after the chat prompt")
        try:
            sample = self.prepare(images[0], answer=word)
            means = compute_means(self, images[1:], progress=False)
            heads = rng.random((n_masks, self.n_total_heads)) < 0.5
            heads[0] = True
            literal = self.logits(sample, means, heads, method="literal")
            fast = self.logits(sample, means, heads, method="fast", batch_size=n_masks)
            own = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        except UnsupportedModel:
            raise
        except Exception as error:  # noqa: BLE001 - whatever breaks is what failed
            refuse(f"{type(error).__name__}: {error}")
        unpatched = self._adjusted(own[None], sample)[0]
        scale = max(1.0, float(own.float().abs().max()))
        if abs(literal[0] - unpatched) > 1e-5 * scale:
            refuse(f"all heads intact gives {literal[0]:.6g}, the model itself {unpatched:.6g}")
        if np.abs(fast - literal).max() > 1e-4 * scale:
            refuse(f"fast and literal ablation differ by {np.abs(fast - literal).max():.3g}")

    # -- identity ----------------------------------------------------------------------
    @property
    def n_total_heads(self) -> int:
        return self.n_layers * self.n_heads

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    def weight_signature(self) -> list[float]:
        """A few numbers that tell this model's weights apart from another's (dtype-robust)."""
        weight = self.decoder.get_input_embeddings().weight.detach()
        rows = weight[: min(8, weight.shape[0])].float()
        return [round(float(v), 4) for v in rows.norm(dim=-1).tolist()]

    # -- samples -----------------------------------------------------------------------
    def load_image(self, image):
        from PIL import Image, UnidentifiedImageError

        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise UserError(f"image not found: {path}")
            try:
                with Image.open(path) as opened:
                    opened.load()
                    image = opened.convert("RGB")
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                raise UserError(f"cannot read image {path}: {error}") from None
        elif not isinstance(image, Image.Image):
            raise UserError(f"expected a PIL image or a path, got {type(image).__name__}")
        else:
            image = image.convert("RGB")
        if self.resolution is not None and image.size != tuple(self.resolution):
            image = image.resize(tuple(self.resolution), Image.BICUBIC)
        return image

    def chat_text(self, prompt: str | None) -> str:
        prompt = PAPER_PROMPT if prompt is None else prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("the prompt must be a non-empty string")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        try:
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # the template's own error, whatever it raises
            raise UserError(f"the model's chat template cannot take this prompt: {error}") from None

    def _answer_ids(self, chat_text: str, answer) -> tuple[list[int], str | None]:
        """(token ids of ``answer`` right after ``chat_text``, why they are unusable or None)."""
        if not isinstance(answer, str) or not answer.strip():
            return [], "the answer must be a non-empty word"
        try:
            separator = "" if chat_text[-1:].isspace() else " "
            prompt_ids = self.tokenizer(chat_text, add_special_tokens=False)["input_ids"]
            full_ids = self.tokenizer(chat_text + separator + answer.strip(), add_special_tokens=False)["input_ids"]
            if full_ids[: len(prompt_ids)] != prompt_ids or len(full_ids) == len(prompt_ids):
                full_ids = prompt_ids + self.tokenizer(answer.strip(), add_special_tokens=False)["input_ids"]
        except Exception as error:  # noqa: BLE001 - whatever the tokenizer raises is the reason
            return [], f"the tokenizer cannot represent the answer {answer!r}: {error}"
        ids = full_ids[len(prompt_ids):]
        unk = self.tokenizer.unk_token_id
        if not ids or (unk is not None and unk in ids):
            return ids, f"the tokenizer cannot represent the answer {answer!r}"
        return ids, None

    def answer_tokens(self, chat_text: str, answer: str) -> list[int]:
        """Token ids the model would emit for ``answer`` right after the prompt (UserError if none)."""
        ids, problem = self._answer_ids(chat_text, answer)
        if problem is not None:
            raise UserError(problem)
        return ids

    def answer_problem(self, answer, prompt: str | None = None) -> str | None:
        """Why ``answer`` cannot be scored after ``prompt`` (empty, or tokenized to nothing or to
        the unknown token), or ``None`` when it can. Never raises for the answer, so a pipeline
        can record such a sample as skipped; an unusable prompt still raises :class:`UserError`."""
        return self._answer_ids(self.chat_text(prompt), answer)[1]

    def prepare(self, image, answer: str | None = None, prompt: str | None = None,
                sample_id: str = "") -> Sample:
        """Tokenize (image, prompt) with the model's processor and locate prefix, image and text."""
        image = self.load_image(image)
        text = self.chat_text(prompt)
        inputs = self._model_inputs([image], text)
        ids = inputs["input_ids"][0]
        positions = (ids == self.image_token_id).nonzero().flatten()
        if positions.numel() == 0:
            raise UserError("the chat template placed no image token in the prompt")
        text_start = int(positions[-1]) + 1
        if text_start >= ids.numel():
            raise UserError("the prompt has no text token after the image")
        answer_ids = self.answer_tokens(text, answer) if answer is not None else []
        prefix = ids[: int(positions[0])].tolist()
        digest = hashlib.sha256(repr((prefix, int(positions.numel()))).encode()).hexdigest()[:16]
        return Sample(inputs=inputs, prompt=PAPER_PROMPT if prompt is None else prompt, answer=answer,
                      answer_id=answer_ids[0] if answer_ids else None,
                      answer_tokens=self.tokenizer.convert_ids_to_tokens(answer_ids),
                      image_positions=positions, text_start=text_start, seq_len=int(ids.numel()),
                      prefix_hash=digest, sample_id=sample_id, image_size=tuple(image.size))

    def prefix_hash(self, prompt: str | None = None) -> str:
        """Hash of the token ids before the image (and of the image token count) for ``prompt``."""
        from PIL import Image

        size = tuple(self.resolution) if self.resolution else (224, 224)
        return self.prepare(Image.new("RGB", size), prompt=prompt).prefix_hash

    # -- the unablated forward ---------------------------------------------------------
    @torch.no_grad()
    def _recorded_forward(self, sample: Sample, keep_head_outputs: bool = True):
        plan = RecordPlan(sample.text_start, sample.image_positions, keep_head_outputs=keep_head_outputs,
                          output_projection=self.family.output_projection)
        captured = {}

        def capture(module, args, kwargs):
            captured.update(inputs_embeds=kwargs.get("inputs_embeds"), position_ids=kwargs.get("position_ids"))

        handle = self.decoder.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            with ablation(plan):
                logits = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        finally:
            handle.remove()
        return plan, captured, logits

    def record(self, sample: Sample) -> Record:
        """The unablated forward: answer logit, attention statistics, per-head outputs.

        Also keeps (on the sample) the prefix/image keys and values and the text
        embeddings that the fast path reuses for every mask."""
        if "record" in sample._state:
            return sample._state["record"]
        plan, captured, logits = self._recorded_forward(sample)
        embeds = captured["inputs_embeds"]
        if embeds is None:
            raise UserError("the decoder was not called with inputs_embeds; unsupported model")
        positions = captured["position_ids"]
        if positions is None:
            positions = torch.arange(sample.seq_len, device=self.device)[None]
        sample._state.update(
            prefix_k=[plan.keys[l] for l in range(self.n_layers)],
            prefix_v=[plan.values[l] for l in range(self.n_layers)],
            text_embeds=embeds[:, sample.text_start:].detach(),
            text_positions=positions[..., sample.text_start:].detach(),
            text_blocked=[plan.text_blocked[l] for l in range(self.n_layers)],
            prefix_reads_text=[l for l in range(self.n_layers) if plan.prefix_reads_text[l]],
        )
        text_to_image = torch.stack([plan.text_to_image[l] for l in range(self.n_layers)])
        record = Record(
            logit=self._adjusted(logits[None], sample)[0] if sample.answer_id is not None else float("nan"),
            predicted_id=int(logits.argmax()),
            image_attention=text_to_image.sum(-1).mean(-1).double().cpu().numpy(),
            text_to_image=text_to_image.float().cpu().numpy(),
            head_outputs=torch.stack([plan.head_outputs[l] for l in range(self.n_layers)]).float().cpu().numpy(),
            _answer_id=sample.answer_id,
        )
        sample._state["record"] = record
        return record

    @torch.no_grad()
    def image_keys_values(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values at the image positions: [L, KVH, P_img, D] each."""
        if "prefix_k" in sample._state:
            keys, values = sample._state["prefix_k"], sample._state["prefix_v"]
        else:
            plan, _, _ = self._recorded_forward(sample, keep_head_outputs=False)
            keys = [plan.keys[l] for l in range(self.n_layers)]
            values = [plan.values[l] for l in range(self.n_layers)]
        img = sample.image_positions
        return torch.stack([k[:, img] for k in keys]), torch.stack([v[:, img] for v in values])

    def _model_inputs(self, images: list, text: str) -> dict:
        """The processor's output for ``images``, each with the chat ``text``, on the model's
        device, floating tensors in its dtype (one call for the batch)."""
        # A chat text that starts with the tokenizer's BOS (Gemma 3's template writes <bos>) is not given a
        # second one by a tokenizer that adds it (add_bos_token): the rule of transformers' own
        # processor.apply_chat_template(tokenize=True).
        bos = getattr(self.tokenizer, "bos_token", None)
        special = {"add_special_tokens": False} if bos and text.startswith(bos) else {}
        try:
            # a batch as one image per sample (Gemma 3's processor reads a flat list as one sample's images)
            batch = images if len(images) == 1 else [[image] for image in images]
            inputs = self.processor(images=batch, text=[text] * len(images), return_tensors="pt", **special)
        except Exception as error:
            raise UserError(f"the processor cannot take this image/prompt: {error}") from None
        inputs.pop("labels", None)        # PaliGemma's processor adds training labels; not a forward input
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.dtype)
        return inputs

    @torch.no_grad()
    def image_keys_values_many(self, images: Sequence, prompt: str | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Keys and values at the image positions of several images under one prompt, in one
        forward: [B, L, KVH, P_img, D] each, and the prompt-prefix hash (as :meth:`prepare`'s).

        The chat text is rendered once and the processor called once for the batch; images must
        give the same token sequence length (one fixed resolution), else UserError."""
        loaded = [self.load_image(image) for image in images]
        inputs = self._model_inputs(loaded, self.chat_text(prompt))
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if (ids != ids[:1]).any() or (mask is not None and not bool(mask.all())):
            raise UserError("reference images gave different image token counts; use one fixed resolution")
        positions = (inputs["input_ids"][0] == self.image_token_id).nonzero().flatten()
        if positions.numel() == 0:
            raise UserError("the chat template placed no image token in the prompt")
        prefix = inputs["input_ids"][0, : int(positions[0])].tolist()
        digest = hashlib.sha256(repr((prefix, int(positions.numel()))).encode()).hexdigest()[:16]
        plan = KeyValuePlan(positions)
        with ablation(plan):
            self.model(**inputs, use_cache=False, **self._last_only)
        keys = torch.stack([plan.keys[l] for l in range(self.n_layers)], dim=1)
        values = torch.stack([plan.values[l] for l in range(self.n_layers)], dim=1)
        return keys, values, digest

    def _adjusted(self, logits: torch.Tensor, sample: Sample) -> np.ndarray:
        logits = logits.double()
        return (logits[:, sample.answer_id] - logits.mean(-1)).cpu().numpy()

    # -- ablated forwards --------------------------------------------------------------
    def _check_means(self, sample: Sample, means: "MeanKV") -> None:
        means.check(self, sample)

    def _fast_layers(self, sample: Sample, means: "MeanKV") -> list[_FastLayer]:
        cached = sample._state.get("fast_layers")      # (means, layers): compared by identity, and the
        if cached is None or cached[0] is not means:   # reference keeps the object alive (no id() reuse)
            self.record(sample)
            img = sample.image_positions
            layers = []
            for l in range(self.n_layers):
                prefix_k = _expand_heads(sample._state["prefix_k"][l], self.n_heads).contiguous()
                prefix_v = _expand_heads(sample._state["prefix_v"][l], self.n_heads).contiguous()
                mean_k = _expand_heads(means.k[l], self.n_heads).to(prefix_k).contiguous()
                mean_v = _expand_heads(means.v[l], self.n_heads).to(prefix_v)
                blocked = sample._state["text_blocked"][l]
                ts = sample.text_start
                layers.append(_FastLayer(prefix_k, prefix_v, mean_k, (mean_v - prefix_v[:, img]).contiguous(),
                                         blocked[:, :ts].contiguous(), blocked[:, ts:].contiguous()))
            sample._state["fast_layers"] = (means, layers)
        return sample._state["fast_layers"][1]

    def _unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits from final hidden states: lm_head, the wrapper's logit scale and the final
        soft-cap, where the model has them."""
        logits = self.lm_head(hidden)
        if self._logit_scale is not None:
            logits = logits * self._logit_scale
        if self._final_softcap:
            logits = torch.tanh(logits / self._final_softcap) * self._final_softcap
        return logits

    def fast_path_problem(self, sample: Sample) -> str | None:
        """Why the fast path does not hold for ``sample`` (``None`` when it does).

        The fast path reuses the recorded prefix and image keys and values for every mask, which
        is exact only if no prefix or image position attends to a text position. That is read from
        the model's own masks in the recorded forward (a prefix-LM such as PaliGemma fails it)."""
        self.record(sample)
        layers = sample._state["prefix_reads_text"]
        if not layers:
            return None
        return (f"prefix/image positions attend to text positions in decoder layer(s) {layers} under the model's "
                "own mask (e.g. a prefix-LM's bidirectional prompt), so their keys and values change under "
                "ablation and cannot be reused; the literal path runs instead")

    def path(self, sample: Sample, method: str = "fast") -> str:
        """The path :meth:`logits` takes for ``sample``: ``"fast"`` or ``"literal"``."""
        return "fast" if method == "fast" and self.fast_path_problem(sample) is None else "literal"

    @staticmethod
    def _image_index(sample: Sample) -> slice | torch.Tensor:
        img = sample.image_positions
        first, last = int(img[0]), int(img[-1])
        if last - first + 1 == img.numel():
            return slice(first, last + 1)
        return img

    @torch.no_grad()
    def _fast(self, sample, means, heads, text, image) -> np.ndarray:
        plan = FastPlan(self._fast_layers(sample, means), self._image_index(sample), heads, text, image)
        batch = heads.shape[0]
        embeds = sample._state["text_embeds"].expand(batch, -1, -1)
        positions = sample._state["text_positions"]
        positions = positions.expand(*positions.shape[:-2], batch, positions.shape[-1])
        groups = (shared_head_prefixes(heads, self.n_heads, self.n_layers, n_text=sample.n_text)
                  if self.share_prefixes and text is None and image is None else [None] * self.n_layers)
        layers = self.family.layers_of(self.model)
        last = (_last_position_only(layers[-1], len(layers) - 1, plan) if self.last_position_only
                else contextlib.nullcontext())
        with ablation(plan), _computed_once(layers, plan, groups, batch), last:
            hidden = self.decoder(inputs_embeds=embeds, position_ids=positions, use_cache=False).last_hidden_state
        return self._adjusted(self._unembed(hidden[:, -1]), sample)

    @torch.no_grad()
    def _literal(self, sample, means, heads, text, image) -> np.ndarray:
        plan = LiteralPlan(sample.text_start, sample.image_positions, means, heads, text, image)
        with ablation(plan):
            logits = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[:, -1]
        return self._adjusted(logits, sample)

    def logits(self, sample: Sample, means: "MeanKV", heads, text=None, image=None, *,
               method: str = "fast", batch_size: int | str = 64, progress: bool = False) -> np.ndarray:
        """Adjusted answer logits ℓ(x, u, v) for each row of the masks (True = intact).

        heads: bool [M, N]; text: bool [M, P_txt] or None (all intact); image: bool [M, P_img]
        or None. ``method="literal"`` runs one full-sequence forward per mask (the reference);
        ``"fast"`` reruns only the text tokens, ``batch_size`` masks at a time, halving the
        batch if the device runs out of memory; where its premise fails for the model's mask
        (:meth:`fast_path_problem`) it warns and runs the literal path. ``batch_size="auto"``
        times the batch sizes of ``AUTO_BATCH_SIZES`` on the first call with enough masks (on the
        CPU; 256 on an accelerator) and keeps the fastest: the values do not depend on the batch."""
        if sample.answer_id is None:
            raise UserError("this sample was prepared without an answer word")
        if method not in ("fast", "literal"):
            raise UserError(f"unknown method {method!r}; use 'fast' or 'literal'")
        batch_size = parse_batch_size(batch_size)
        self._check_means(sample, means)
        device = self.device
        heads = _as_mask(heads, None, self.n_total_heads, "head", device)
        n_masks = heads.shape[0]
        text = None if text is None else _as_mask(text, n_masks, sample.n_text, "text-token", device)
        image = None if image is None else _as_mask(image, n_masks, sample.n_image, "image-token", device)
        if method == "fast" and (problem := self.fast_path_problem(sample)) is not None:
            import warnings
            warnings.warn(f"{self.family.name}: {problem}", RuntimeWarning, stacklevel=2)
            method = "literal"
        run = self._fast if method == "fast" else self._literal
        trials: list[int] = []                         # batch sizes still to time (batch_size="auto")
        rates: dict[int, float] = {}
        if method == "literal":
            step = 1
        elif batch_size != "auto":
            step = batch_size
        elif device.type != "cpu":
            step = AUTO_ACCELERATOR_BATCH
        elif self._tuned_batch is not None:
            step = self._tuned_batch
        elif n_masks >= sum(AUTO_BATCH_SIZES):
            trials = list(AUTO_BATCH_SIZES)
            step = trials.pop(0)
        else:
            step = AUTO_BATCH_SIZES[1]
        out = np.empty(n_masks, dtype=np.float64)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=n_masks, desc=f"masks ({method})", unit="mask", leave=False)
        start = 0
        while start < n_masks:
            stop = min(start + step, n_masks)
            rows = slice(start, stop)
            began = time.perf_counter()
            try:
                out[rows] = run(sample, means, heads[rows], None if text is None else text[rows],
                                None if image is None else image[rows])
            except torch.OutOfMemoryError:
                if step == 1:
                    raise
                step = max(1, step // 2)
                trials = []
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                import warnings
                warnings.warn(f"out of memory: mask batch halved to {step}", RuntimeWarning, stacklevel=2)
                continue
            if trials or rates:
                rates[step] = (stop - start) / max(time.perf_counter() - began, 1e-9)
                if trials:
                    step = trials.pop(0)
                else:
                    step = self._tuned_batch = max(rates, key=rates.get)
                    rates = {}
            if bar is not None:
                bar.update(stop - start)
            start = stop
        if bar is not None:
            bar.close()
        return out

    def reference_logits(self, sample: Sample, means: "MeanKV", method: str = "fast") -> tuple[float, float]:
        """ℓ(1) and ℓ(0): every head intact, every head ablated (u = v = 1)."""
        key = ("reference", method)
        cached = sample._state.get(key)                # (means, values), compared by identity as above
        if cached is None or cached[0] is not means:
            masks = np.stack([np.ones(self.n_total_heads, bool), np.zeros(self.n_total_heads, bool)])
            intact, ablated = self.logits(sample, means, masks, method=method)
            sample._state[key] = (means, (float(intact), float(ablated)))
        return sample._state[key][1]

    def normalized(self, sample: Sample, means: "MeanKV", heads, text=None, image=None, *,
                   method: str = "fast", batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """π = (ℓ(x, u, v) − ℓ(0)) / (ℓ(1) − ℓ(0))."""
        intact, ablated = self.reference_logits(sample, means, method)
        values = self.logits(sample, means, heads, text, image, method=method, batch_size=batch_size,
                             progress=progress)
        return (values - ablated) / (intact - ablated)

    # -- logit lens --------------------------------------------------------------------
    @torch.no_grad()
    def logit_lens(self, record: Record, layer: int, head: int, k: int = 10) -> list[tuple[str, float]]:
        """Top-k tokens of one head's output at the last position, through final norm and unembedding."""
        vector = torch.as_tensor(record.head_outputs[layer, head], device=self.device, dtype=self.dtype)
        logits = self._unembed(self.final_norm(vector[None]))[0].float()
        values, ids = logits.topk(k)
        tokens = self.tokenizer.convert_ids_to_tokens(ids.tolist())
        return [(token, float(value)) for token, value in zip(tokens, values.tolist())]

    @torch.no_grad()
    def logit_lens_all(self, record: Record, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`logit_lens` of every head at once: token ids and logits, int64/float32 [N, k]
        (head n = l·H + h)."""
        outputs = record.head_outputs.reshape(-1, record.head_outputs.shape[-1])
        ids, values = [], []
        for start in range(0, outputs.shape[0], 256):
            vectors = torch.as_tensor(outputs[start:start + 256], device=self.device, dtype=self.dtype)
            top = self._unembed(self.final_norm(vectors)).float().topk(k, dim=-1)
            ids.append(top.indices.cpu().numpy())
            values.append(top.values.cpu().numpy())
        return np.concatenate(ids).astype(np.int64), np.concatenate(values).astype(np.float32)
