"""The generation hook: interventions on a head set while the model generates (the records layer's
``generation`` stage that uses it is :mod:`hearlib.records.generation_stage`).

``with intervene(engine, heads, mode=...): engine.model.generate(...)`` changes, for the heads in
the set, what every *text query* reads at the image positions, during a plain ``generate`` (the
prompt in one forward, then one query at a time with a key/value cache). A text query is every
position after the prompt's last image token, generated tokens included (METHOD.md, "Setting").

* ``ablate`` -- the paper's mean ablation (METHOD.md, "Mean ablation of image-to-text flow")
  with x_n = 0 for the heads in the set and u = v = 1: a text query of such a head reads the mean
  key and value at each image position instead of the sample's own. Same attention function
  (``hear_attention``) and the same arithmetic as :class:`~hearlib.method.attention.LiteralPlan`,
  so the first generated token's logits are ``engine.logits(sample, means, x, method="literal")``'s.
* ``keep-only`` -- the same with x_n = 1 exactly for the heads in the set: every other head ablated.
* ``scale`` -- a text query of a head in the set multiplies its attention to the image positions
  by ``scale`` and renormalises: a_j ← s·a_j / (s·Σ_img a + Σ_other a). ``scale=0`` removes the
  image from the head, ``scale>1`` boosts it; no means needed.

Prefix and image queries and every head outside the set attend as in the unablated model (in a
prefix-LM such as PaliGemma the image reads text positions the ablation changed, as in the literal path).
In a cross-attention model (Mllama) every query of a head in the set reads the mean image keys/values, the
prompt's prefix included, as in the literal path (docs/METHOD.md, "Cross-attention models"); ``scale`` is
refused there (every key is an image key, so renormalising over them changes nothing). In an encoder-decoder
(Florence-2) every decoder query is a text query and the image keys are the encoder's image positions, read
from the encoder's input ids where the model embeds them (``generate`` runs the encoder itself and then the
forwards without input_ids); ``scale`` rescales a head's attention to them (docs/METHOD.md, "Encoder-decoder
models").
The prompt's layout (image positions, where the text starts) is read from the ``input_ids`` of
each forward that carries the image; the absolute position of each query from the key/value
cache's length (``get_seq_length()`` of the ``cache`` / ``past_key_values`` the forward gets). Keys
are taken to be positions 0..K-1, or the last K positions where a sliding-window layer has dropped
the oldest (transformers' dynamic caches); a static cache that rolls its window over is not supported.
Where the wrapper's ``generate`` runs ``language_model.generate`` from ``inputs_embeds`` (BLIP-2,
InstructBLIP), the language model's forwards are watched as well, the prompt's ids being those the
input embedding read.
One image layout per batch (rows padded alike); ``generate`` must run in the calling thread (the
plan is a context variable). On exit, normally or by an exception, the plan is reset and the hook
removed: the model is the one that went in.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from transformers import GenerationMixin

from hearlib.errors import MeansMismatch, UserError
from hearlib.method.attention import ablation, cross_mean_ablated, mean_ablated
from hearlib.method.plans_common import Plan, expand_heads

if TYPE_CHECKING:
    from hearlib.method.engine import Engine
    from hearlib.method.means import MeanKV

MODES = ("ablate", "scale", "keep-only")


def head_set(engine: "Engine", heads) -> torch.Tensor:
    """bool [N], True = head n = l·H + h is in the set, from (layer, head) pairs, ``"layer.head"``
    strings or flat indices. A boolean mask is refused: hearlib's masks mean True = *intact*,
    which would silently invert the set."""
    if isinstance(heads, (np.ndarray, torch.Tensor)) and heads.dtype in (np.bool_, torch.bool):
        raise UserError("give the heads as (layer, head) pairs or flat indices, not a boolean mask "
                        "(hearlib's masks mean True = intact)")
    if isinstance(heads, (np.ndarray, torch.Tensor)):
        heads = heads.tolist()
    if isinstance(heads, str):
        heads = [part for part in heads.split(",") if part.strip()]
    member = torch.zeros(engine.n_total_heads, dtype=torch.bool)
    for item in heads:
        if isinstance(item, str):
            parts = item.strip().split(".")
            try:
                item = tuple(int(p) for p in parts)
            except ValueError:
                raise UserError(f"not a head {item!r}: expected 'layer.head', e.g. 3.1") from None
            if len(item) != 2:
                raise UserError(f"not a head {'.'.join(parts)!r}: expected 'layer.head', e.g. 3.1")
        if isinstance(item, (tuple, list)) and len(item) == 2:
            layer, head = (int(v) for v in item)
            if not (0 <= layer < engine.n_layers and 0 <= head < engine.n_heads):
                raise UserError(f"head {layer}.{head} is outside the model's {engine.n_layers} layers × "
                                f"{engine.n_heads} heads")
            member[layer * engine.n_heads + head] = True
        else:
            try:
                index = int(item)
            except (TypeError, ValueError):
                raise UserError(f"not a head: {item!r}") from None
            if not 0 <= index < engine.n_total_heads:
                raise UserError(f"head index {index} is outside 0..{engine.n_total_heads - 1}")
            member[index] = True
    return member


class _Layout:
    """Where the image and the text lie in the sequence being generated, and the absolute
    position of the current forward's first query."""

    def __init__(self, image_token_id: int, encoder: bool = False):
        self.image_token_id = image_token_id
        self.encoder = encoder                             # an encoder-decoder: the image lies in the encoder's keys
        self.image_positions: torch.Tensor | None = None   # [P_img] absolute positions
        self.n_image: int | None = None                    # HeAr's image tokens (a cross-attention model's keys)
        self.text_start: int | None = None
        self.prefix_hash: str | None = None
        self.start = 0                                     # absolute position of query row 0
        self.n_query: int | None = None

    def see(self, input_ids: torch.Tensor | None, past_length: int, n_keys: int | None = None) -> None:
        """One model forward: a prompt with the image sets the layout; a later step moves ``start``.
        ``n_keys``: a cross-attention model's image keys (HeAr's image tokens there), else None."""
        if input_ids is None:
            raise UserError("intervene needs input_ids in every forward (generate from token ids, not "
                            "inputs_embeds)")
        self.start, self.n_query = int(past_length), int(input_ids.shape[-1])
        rows = input_ids.reshape(-1, input_ids.shape[-1]) == self.image_token_id
        if bool(rows.any()):
            if past_length:
                raise UserError("intervene: image tokens after the start of the sequence are not supported")
            if bool((rows != rows[:1]).any()):
                raise UserError("intervene: the rows of the batch place the image differently; generate one "
                                "layout at a time (no padding before the image)")
            positions = rows[0].nonzero().flatten()
            ids = input_ids.reshape(-1, input_ids.shape[-1])[0]
            self.image_positions = positions
            self.text_start = int(positions[-1]) + 1
            self.n_image = int(positions.numel()) if n_keys is None else int(n_keys)
            prefix = ids[: int(positions[0])].tolist()
            self.prefix_hash = hashlib.sha256(repr((prefix, self.n_image)).encode()).hexdigest()[:16]
        elif past_length == 0:
            self.image_positions = self.text_start = self.prefix_hash = None

    def locate(self, n_query: int, n_key: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(first text-query row, key columns of the image positions still in the keys, which image
        positions 0..P_img-1 those are). Keys are positions 0..K-1, or the last K positions up to
        the last query where a sliding-window cache has dropped the oldest."""
        if self.image_positions is None:
            raise UserError("intervene: this forward carries no image (a prompt with the model's image tokens "
                            "must come first)")
        if n_query != self.n_query:
            raise UserError(f"intervene: the decoder saw {n_query} positions where the input had {self.n_query}; "
                            "unsupported model")
        end = self.start + n_query
        key_start = end - n_key if n_key < end else 0
        columns = self.image_positions - key_start
        inside = (columns >= 0) & (columns < n_key)
        first_text_row = max(0, self.text_start - self.start)
        return first_text_row, columns[inside], inside.nonzero().flatten()


class _GenerationPlan(Plan):
    """A plan over the whole generation: text queries are rows from the layout's text start on."""

    def __init__(self, layout: _Layout, n_heads: int):
        self.layout, self.n_heads = layout, n_heads

    def _plain(self, query, keys, values, attn, n_key):
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores = scores.masked_fill(attn.blocked(query.shape[2], n_key, query.device), float("-inf"))
        return torch.matmul(scores.softmax(-1).to(values.dtype), values)


class MeanAblationPlan(_GenerationPlan):
    """Text query t of head n reads the mean key and value at image position j unless x_n = 1
    (u = v = 1): :class:`~hearlib.method.attention.LiteralPlan`'s arithmetic, for a query block
    that may start anywhere in the sequence (the prompt, then one token at a time)."""

    def __init__(self, layout: _Layout, n_heads: int, means: "MeanKV", intact: torch.Tensor):
        super().__init__(layout, n_heads)
        self.means, self.intact = means, intact           # intact: bool [N], x

    def attend(self, module, layer, query, key, value, attn):
        batch, n_heads, n_query, _ = query.shape
        n_key = key.shape[-2]
        keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
        if getattr(module, "hear_cross_attention", False):       # every query reads the image keys
            if self.layout.encoder and self.layout.image_positions is None:
                raise UserError("intervene: the encoder's input ids with the image tokens were not seen (generate "
                                "from input_ids and pixel_values, not from encoder_outputs)")
            image_keys = self.layout.image_positions if self.layout.encoder else None    # None: every key
            keep = self.intact.to(query.device)[layer * n_heads:(layer + 1) * n_heads][None, :, None, None]
            keep = keep.expand(batch, n_heads, n_query, n_key if image_keys is None else image_keys.numel())
            mean_k = expand_heads(self.means.k[layer], n_heads).to(query)
            mean_v = expand_heads(self.means.v[layer], n_heads).to(query)
            return cross_mean_ablated(query, keys, values, attn, keep, mean_k, mean_v, image_keys)
        ts, img, which = self.layout.locate(n_query, n_key)
        if ts >= n_query or img.numel() == 0:
            return self._plain(query, keys, values, attn, n_key).transpose(1, 2).contiguous()
        mean_k = expand_heads(self.means.k[layer], n_heads)[:, which].to(query)   # [H, P, D]
        mean_v = expand_heads(self.means.v[layer], n_heads)[:, which].to(query)
        keep = self.intact.to(query.device)[layer * n_heads:(layer + 1) * n_heads][None, :, None, None]
        keep = keep.expand(batch, n_heads, n_query - ts, img.numel())[..., None]     # [B, H, T, P, 1]

        return mean_ablated(query, keys, values, attn, ts, img, keep, mean_k, mean_v, n_key)


class ScalePlan(_GenerationPlan):
    """Text query t of a head in the set: attention a_j to image position j becomes
    s·a_j / (s·Σ_img a + Σ_other a); every other row as in the unablated model."""

    def __init__(self, layout: _Layout, n_heads: int, member: torch.Tensor, factor: float):
        super().__init__(layout, n_heads)
        self.member, self.factor = member, factor          # member: bool [N], the set

    def attend(self, module, layer, query, key, value, attn):
        _, n_heads, n_query, _ = query.shape
        n_key = key.shape[-2]
        if self.layout.encoder:             # every decoder query is a text query; the image keys are encoder positions
            ts, img = 0, self.layout.image_positions
        else:
            ts, img, _ = self.layout.locate(n_query, n_key)
        keys, values = expand_heads(key, n_heads), expand_heads(value, n_heads)
        heads = self.member[layer * n_heads:(layer + 1) * n_heads].nonzero().flatten().tolist()
        if ts >= n_query or img.numel() == 0 or not heads:
            return self._plain(query, keys, values, attn, n_key).transpose(1, 2).contiguous()
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        scores = scores.masked_fill(attn.blocked(n_query, n_key, query.device), float("-inf"))
        probs = scores.softmax(-1)
        rows = probs[:, heads, ts:]                                          # [B, |set|, T, K]
        rows[..., img] = rows[..., img] * self.factor
        probs[:, heads, ts:] = rows / rows.sum(-1, keepdim=True)
        out = torch.matmul(probs.to(values.dtype), values)
        return out.transpose(1, 2).contiguous()


def _check_means(engine: "Engine", means: "MeanKV | None", mode: str) -> None:
    if means is None:
        raise UserError(f"mode {mode!r} needs mean keys/values (means=, a file from 'hearlib means')")
    means.check(engine)


@contextlib.contextmanager
def intervene(engine: "Engine", heads, mode: str = "ablate", scale: float = 1.0,
              means: "MeanKV | None" = None) -> Iterator[_GenerationPlan]:
    """Intervene on the head set ``heads`` ((layer, head) pairs, ``"layer.head"`` strings or flat
    indices) for every forward of ``engine.model`` inside the block, e.g. a ``generate``.

    ``mode``: ``"ablate"`` (mean-ablate the set's image reads, ``means`` required),
    ``"keep-only"`` (mean-ablate every head but the set) or ``"scale"`` (multiply the set's
    attention to the image by ``scale`` and renormalise). Yields the active plan; always resets it
    and removes its hook, also when the block raises."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    member = head_set(engine, heads)
    layout = _Layout(engine.image_token_id, encoder=engine.family.encoder_decoder)
    if mode == "scale" and engine.family.cross_attention and not engine.family.encoder_decoder:
        raise UserError(f"{engine.family.name}: mode 'scale' renormalises a head's attention over the image keys, "
                        "which are all the keys of a cross-attention layer (a no-op); use 'ablate' or 'keep-only'")
    if mode == "scale":
        try:
            factor = float(scale)
        except (TypeError, ValueError):
            raise UserError(f"scale must be a number, got {scale!r}") from None
        if not math.isfinite(factor) or factor < 0:
            raise UserError(f"scale must be a finite number >= 0, got {scale!r}")
        plan: _GenerationPlan = ScalePlan(layout, engine.n_heads, member.to(engine.device), factor)
    else:
        _check_means(engine, means, mode)
        intact = member if mode == "keep-only" else ~member
        plan = MeanAblationPlan(layout, engine.n_heads, means, intact.to(engine.device))

    def see(module, args, kwargs, input_ids=None):
        if input_ids is None:
            input_ids = kwargs.get("input_ids", args[0] if args else None)
        past = kwargs.get("cache", kwargs.get("past_key_values"))      # transformers 5 names it cache
        n_keys = (engine.family.cross_attention_keys(engine.model.config, kwargs)
                  if engine.family.cross_attention and kwargs.get("pixel_values") is not None else None)
        layout.see(input_ids, past.get_seq_length() if past is not None else 0, n_keys)
        if mode != "scale" and layout.image_positions is not None and layout.start == 0:
            _check_layout(means, layout)

    def see_encoder_input(module, args):
        # an encoder-decoder: the layout is the encoder's, read where its input ids are embedded (generate
        # embeds them itself and then calls the forward with the encoder's output, no input_ids)
        if args and torch.is_tensor(args[0]) and bool((args[0] == engine.image_token_id).any()):
            layout.see(args[0], 0)
            if mode != "scale":
                _check_layout(means, layout)

    if engine.family.encoder_decoder:
        handles = [engine.model.get_input_embeddings().register_forward_pre_hook(see_encoder_input)]
    else:
        handles = [engine.model.register_forward_pre_hook(see, with_kwargs=True)]
    language_model = getattr(engine.model, "language_model", None)
    if isinstance(language_model, GenerationMixin) and type(engine.model).generate is not GenerationMixin.generate:
        # BLIP-2 / InstructBLIP: the wrapper's generate embeds the prompt, writes the image in and runs
        # language_model.generate from inputs_embeds, never calling the wrapper's forward: watch the language
        # model's forwards too; the prompt's ids are those the input embedding last read
        embedded: dict[str, torch.Tensor] = {}

        def remember(module, args):
            if args and torch.is_tensor(args[0]) and args[0].ndim == 2:
                embedded["ids"] = args[0]

        def see_language_model(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            embeds = kwargs.get("inputs_embeds")
            if input_ids is None and embeds is not None:
                ids = embedded.get("ids")
                input_ids = ids if ids is not None and ids.shape[-1] == embeds.shape[1] else None
            see(module, (), kwargs, input_ids)

        handles.append(engine.model.get_input_embeddings().register_forward_pre_hook(remember))
        handles.append(language_model.register_forward_pre_hook(see_language_model, with_kwargs=True))
    try:
        with ablation(plan):
            yield plan
    finally:
        for handle in handles:
            handle.remove()


def _check_layout(means: "MeanKV", layout: _Layout) -> None:
    """The means must belong to the prompt being generated from (its prefix and image token count)."""
    problems = []
    if means.k.shape[2] != layout.n_image:
        problems.append(f"they have {means.k.shape[2]} image positions, the prompt {layout.n_image}")
    saved = means.meta.get("prefix_hash")
    if saved is not None and saved != layout.prefix_hash:
        problems.append("their prompt prefix (the tokens before the image, or the image token count) differs")
    if problems:
        source = means.meta.get("path", "mean keys/values")
        raise MeansMismatch(f"{source} cannot be used for this prompt: " + "; ".join(problems))
