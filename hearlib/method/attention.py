"""HeAr's attention function and its plans: mean ablation of image-to-text attention, per query head.

One attention function, ``"hear"``, is registered with transformers' ``AttentionInterface`` and
installed on the decoder of a vision-language model by :class:`hearlib.method.engine.Engine`.
Outside an :func:`ablation` context it is plain causal attention (SDPA), so the model behaves as
shipped. Inside one, a *plan* decides what each decoder layer's attention does:

* :class:`RecordPlan` – the unablated forward; keeps the prefix/image keys and values, the
  attention of text queries over image keys (Eq. 10, 13) and each head's output at the last
  position (logit lens).
* :class:`KeyValuePlan` – keeps the image keys and values only (the means).
* :class:`LiteralPlan` – the paper read literally: a full-sequence forward in which text
  query ``t`` of head ``n`` reads the mean key and value at image position ``j`` unless
  ``x_n · u_t · v_j = 1``. The reference for tests. In a cross-attention layer (Mllama; the engine
  marks its module ``hear_cross_attention``) every key is an image key and every query reads them,
  the prefix ones with u = 1 (docs/METHOD.md, "Cross-attention models"); in an encoder-decoder's
  cross-attention the image keys are the encoder's image positions among its keys and the queries the
  decoder's positions, all text (docs/METHOD.md, "Encoder-decoder models").
* :class:`~hearlib.method.fastpath.FastPlan` – the same quantity from the text tokens only.

Every plan attends under the model's own mask (causal, bidirectional image blocks, sliding
windows, a prefix-LM's bidirectional prompt), scale and attention soft-cap.
Masks use 1 (True) = intact; head ``n = l·H + h``.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from hearlib.errors import UnsupportedModel, UserError
from hearlib.method.plans_common import Plan, expand_heads, keep_mask

if TYPE_CHECKING:
    from hearlib.method.means import MeanKV

ATTENTION_NAME = "hear"

_ACTIVE_PLAN: contextvars.ContextVar["Plan | None"] = contextvars.ContextVar("hear_plan", default=None)


def hear_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """The registered attention function: the model's own attention (its mask, scale and soft-cap)
    unless an ablation plan is active, then the plan's."""
    if kwargs.get("s_aux") is not None:
        raise UnsupportedModel("attention sinks (s_aux) are not supported by hearlib's attention plans")
    plan = _ACTIVE_PLAN.get()
    # HeAr's layer: the engine's ordinal among the covered (softmax-attention) layers, else transformers' index
    layer = getattr(module, "hear_layer", getattr(module, "layer_idx", None))
    if plan is None or layer is None:
        if softcap is None:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                          dropout=dropout, **kwargs)
        return _plain_attention(query, key, value, attention_mask, scaling, softcap), None
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    return plan.attend(module, layer, query, key, value, Attn(attention_mask, scaling, softcap)), None


def hear_mask(*args, **kwargs):
    """transformers' SDPA mask, always materialised (never ``None`` for "plain causal"), so the
    plans read the mask the model really uses: [B, 1, Q, K] booleans, True = may attend."""
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(ATTENTION_NAME, hear_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, hear_mask)


@dataclass
class Attn:
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
    attn = Attn(mask, scaling if scaling is not None else query.shape[-1] ** -0.5, softcap)
    keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
    scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
    scores = scores.masked_fill(attn.blocked(seq, key.shape[-2], query.device), float("-inf"))
    return torch.matmul(scores.softmax(-1).to(values.dtype), values).transpose(1, 2).contiguous()


@contextlib.contextmanager
def ablation(plan: "Plan") -> Iterator["Plan"]:
    """Activate ``plan`` for every decoder attention call inside the block; always cleaned up."""
    token = _ACTIVE_PLAN.set(plan)
    try:
        yield plan
    finally:
        _ACTIVE_PLAN.reset(token)


def _causal_scores_mask(n_query: int, n_key: int, device) -> torch.Tensor:
    """Boolean [n_query, n_key] mask, True where a query may not attend (future keys).
    Queries are the last ``n_query`` positions of the ``n_key`` long sequence."""
    offset = n_key - n_query
    q = torch.arange(n_query, device=device)[:, None] + offset
    k = torch.arange(n_key, device=device)[None, :]
    return k > q


class RecordPlan(Plan):
    """Unablated attention under the model's mask that records what later forwards and analyses
    need, including which keys each text query may read and whether any prefix or image position
    reads a text position (the fast path's premise)."""

    def __init__(self, text_start: int, image_positions: torch.Tensor):
        self.text_start = text_start
        self.image_positions = image_positions
        self.keys: dict[int, torch.Tensor] = {}          # [KVH, text_start, D], rotated
        self.values: dict[int, torch.Tensor] = {}
        self.text_to_image: dict[int, torch.Tensor] = {}  # [H, P_txt, P_img]
        self.head_outputs: dict[int, torch.Tensor] = {}   # [H, d_model], filled by the engine's output-projection hooks
        self.text_blocked: dict[int, torch.Tensor] = {}   # [P_txt, S] True = the text query may not read
        self.prefix_reads_text: dict[int, bool] = {}      # a prefix/image query reads a text key

    def attend(self, module, layer, query, key, value, attn):
        _, n_heads, seq, _ = query.shape
        ts, n_key = self.text_start, key.shape[-2]
        cross = getattr(module, "hear_cross_attention", False)        # keys from outside the sequence
        self.keys[layer] = (key[0] if cross else key[0, :, :ts]).detach().clone()
        self.values[layer] = (value[0] if cross else value[0, :, :ts]).detach().clone()
        keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
        blocked = attn.blocked(seq, n_key, query.device)
        rows = blocked.reshape(-1, seq, n_key)
        if rows.shape[0] != 1:
            raise UserError("the recorded forward must see one sample (a mask of batch 1)")
        self.text_blocked[layer] = rows[0, ts:].clone()
        self.prefix_reads_text[layer] = False if cross else bool((~rows[0, :ts, ts:]).any())
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores.masked_fill_(blocked, float("-inf"))
        probs = scores.softmax(-1)
        out = torch.matmul(probs.to(values.dtype), values)                   # [1, H, S, D]
        text_rows = probs[0, :, self.text_start:]                             # [H, P_txt, S]
        self.text_to_image[layer] = text_rows[:, :, self.image_positions].detach().clone()
        return out.transpose(1, 2).contiguous()


class KeyValuePlan(Plan):
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
        keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores.masked_fill_(attn.blocked(seq, key.shape[-2], query.device), float("-inf"))
        out = torch.matmul(scores.softmax(-1).to(values.dtype), values)
        return out.transpose(1, 2).contiguous()


class LiteralPlan(Plan):
    """Full-sequence forward; text queries read per-(head, query, image token) own or mean K/V."""

    def __init__(self, text_start: int, image_positions: torch.Tensor, means: "MeanKV",
                 heads: torch.Tensor, text: torch.Tensor | None, image: torch.Tensor | None):
        self.text_start, self.image_positions, self.means = text_start, image_positions, means
        self.heads, self.text, self.image = heads, text, image

    def attend(self, module, layer, query, key, value, attn):
        batch, n_heads, seq, _ = query.shape
        ts, img = self.text_start, self.image_positions
        keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
        mean_k = expand_heads(self.means.k[layer], n_heads).to(query)        # [H, P_img, D]
        mean_v = expand_heads(self.means.v[layer], n_heads).to(query)
        if getattr(module, "hear_cross_attention", False):
            # every query reads the image: the prefix ones (before the text, u not defined) with u = 1
            text = None if self.text is None else torch.cat([self.text.new_ones(batch, ts), self.text], 1)
            keep = keep_mask(layer, n_heads, self.heads, text, self.image).expand(batch, n_heads, seq, img.numel())
            return cross_mean_ablated(query, keys, values, attn, keep, mean_k, mean_v, img)
        keep = keep_mask(layer, n_heads, self.heads, self.text, self.image)
        keep = keep.expand(batch, n_heads, seq - ts, img.numel())[..., None]  # [B, H, T, P, 1]

        return mean_ablated(query, keys, values, attn, ts, img, keep, mean_k, mean_v, seq)


def cross_mean_ablated(query, keys, values, attn: "Attn", keep, mean_k, mean_v, image_keys=None) -> torch.Tensor:
    """Cross-attention in which query ``t`` reads the mean key and value of image key ``j`` wherever
    ``keep`` [B, H, Q, P] is False: :func:`mean_ablated` where every query is a text query, without its
    per-query copies of the keys. ``image_keys`` [P]: the key columns that are image keys (an encoder's image
    positions; the other keys stay the sample's own); None: every key (Mllama). Returns [B, Q, H, D]."""
    n_query, n_key = query.shape[2], keys.shape[-2]
    if image_keys is not None and not torch.equal(image_keys, torch.arange(n_key, device=image_keys.device)):
        full = keep.new_ones(*keep.shape[:-1], n_key)
        full[..., image_keys] = keep
        keep = full
        mean_k, mean_v = _with_image_keys(keys, mean_k, image_keys), _with_image_keys(values, mean_v, image_keys)
    own = torch.matmul(query, keys.transpose(-1, -2))
    mean = torch.matmul(query, mean_k.transpose(-1, -2))                       # [B, H, Q, K]
    scores = attn.scores(torch.where(keep, own, mean))
    probs = scores.masked_fill(attn.blocked(n_query, n_key, query.device), float("-inf")).softmax(-1)
    probs = probs.to(values.dtype)
    out = torch.matmul(probs * keep, values) + torch.matmul(probs * ~keep, mean_v)
    return out.transpose(1, 2).contiguous()


def _with_image_keys(own: torch.Tensor, mean: torch.Tensor, image_keys: torch.Tensor) -> torch.Tensor:
    """``own`` [B, H, K, D] with the mean [H, P, D] written at the columns ``image_keys``."""
    full = own.clone()
    full[:, :, image_keys] = mean.to(own.dtype)
    return full


def mean_ablated(query, keys, values, attn: "Attn", ts: int, img, keep, mean_k, mean_v, n_key: int) -> torch.Tensor:
    """Attention in which text query ``t >= ts`` reads the mean key and value at image position ``j``
    wherever ``keep`` [B, H, T, P, 1] is False (Eq. 5 read literally); every other query as the model
    does. Returns [B, Q, H, D]. Shared by :class:`LiteralPlan` and the generation plans of
    :mod:`hearlib.method.generation_hook`."""
    n_query = query.shape[2]
    own_k, own_v = keys[:, :, img][:, :, None], values[:, :, img][:, :, None]   # [B, H, 1, P, D]
    text_k = torch.where(keep, own_k, mean_k[None, :, None])                    # [B, H, T, P, D]
    text_v = torch.where(keep, own_v, mean_v[None, :, None])

    raw = torch.matmul(query, keys.transpose(-1, -2))
    raw[:, :, ts:, img] = torch.einsum("bhtd,bhtpd->bhtp", query[:, :, ts:], text_k)
    scores = attn.scores(raw).masked_fill(attn.blocked(n_query, n_key, query.device), float("-inf"))
    probs = scores.softmax(-1).to(values.dtype)

    out = torch.matmul(probs, values)
    text_probs = probs[:, :, ts:].clone()
    image_probs = text_probs[..., img]
    text_probs[..., img] = 0
    out[:, :, ts:] = torch.matmul(text_probs, values) + torch.einsum("bhtp,bhtpd->bhtd", image_probs, text_v)
    return out.transpose(1, 2).contiguous()
