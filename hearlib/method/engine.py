"""The ablation engine: a vision-language model with HeAr's attention function installed
(:mod:`hearlib.method.attention`), and the calls the study makes of it.

Inside an :func:`~hearlib.method.attention.ablation` context a *plan* decides what each decoder
layer's attention does:

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

Masks use 1 (True) = intact; head ``n = l·H + h``, ``l`` counting the layers the engine covers: every
decoder layer, or in a hybrid decoder (linear attention, convolutions or state-space layers between the
softmax-attention ones) the softmax-attention layers only (:attr:`Engine.covered_layers`,
:attr:`Engine.coverage`; docs/METHOD.md, "Hybrid decoders"), or in a cross-attention model (Mllama) the
cross-attention layers only, whose keys are the image tokens (``Family.cross_attention``; docs/METHOD.md,
"Cross-attention models"), or in an encoder-decoder (Florence-2) the decoder's cross-attention over the
encoder's image positions, the decoder's positions being the text (``Family.encoder_decoder``; docs/METHOD.md,
"Encoder-decoder models"). The other layers (and an encoder) run as the model runs them.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from hearlib.errors import UserError
from hearlib.families.registry import family_of
from hearlib.method.attention import ATTENTION_NAME, KeyValuePlan, LiteralPlan, RecordPlan, ablation
from hearlib.method.checks import EngineChecks
from hearlib.method.fastpath import FastPlan, computed_once, last_position_only, shared_head_prefixes
from hearlib.method.masks import parse_batch_size
from hearlib.method.samples import ForwardSummary, RecordedForward, Sample, as_mask, load_image
from hearlib.prompts import PAPER_PROMPT

if TYPE_CHECKING:
    from hearlib.method.means import MeanKV

# batch_size="auto": the mask batch sizes timed on the CPU (the first call with enough masks
# runs one batch of each and keeps the fastest) and the size used on an accelerator
AUTO_BATCH_SIZES = (128, 256, 512, 1024)
AUTO_ACCELERATOR_BATCH = 256


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


class Engine(EngineChecks):
    """Mean ablation of image-to-text attention on a transformers vision-language model.

    What it touches in the model (decoder, attention modules, output projection, final norm,
    unembedding, image token id) is found through the family's record
    (:func:`hearlib.families.registry.family_of`); an unsupported ``model_type`` raises UnsupportedModel."""

    def __init__(self, model, processor, *, name: str | None = None,
                 resolution: tuple[int, int] | None = None):
        self.model = model.eval()
        _own_aligned_memory(model)          # records must not depend on where the weights were loaded
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.name = name or getattr(model.config, "_name_or_path", "") or model.config.model_type
        self.resolution = resolution
        self.family = family_of(model.config)
        self.family.give_chat_template(processor)      # BLIP-2's processors keep none: the record's prompt format
        self.decoder = self.family.decoder_of(model)
        self.lm_head = self.family.lm_head_of(model)
        self.final_norm = self.family.final_norm_of(model)
        text_config = self.family.text_config_of(model.config)
        # HeAr's layers: every decoder layer, or a hybrid decoder's softmax-attention layers only
        # (decoder layer indices; head n = l·H + h counts the covered layers l in order)
        self.covered_layers = self.family.covered_layers(model)
        self.n_decoder_layers = (len(self.family.layers_of(model)) if self.family.hybrid
                                 else text_config.num_hidden_layers)
        self.n_layers = len(self.covered_layers) if self.family.hybrid else text_config.num_hidden_layers
        # an encoder-decoder's text config (BART) names the decoder's heads apart from the encoder's
        self.n_heads = getattr(text_config, "decoder_attention_heads", None) or text_config.num_attention_heads
        self.n_kv_heads = getattr(text_config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // self.n_heads
        self.image_token_id = self.family.image_token_id_of(model.config)
        # the fast path runs a layer once per group of masks that agree on its heads and every
        # earlier layer's (shared_head_prefixes); False runs every mask through every layer
        self.share_prefixes = self.family.fast_groups
        # and its last layer computes the last text position only (the only one the logits read)
        self.last_position_only = True
        self._tuned_batch: int | None = None            # batch_size="auto": the fastest size measured
        # Gemma-2-style decoders soft-cap the final logits; the fast path and the logit lens unembed
        # themselves, so they apply the same cap (None: no cap).
        self._final_softcap = self.family.final_softcap_of(model)
        # A wrapper that scales its logits (Cohere Compass; Aya Vision from transformers 5.25) gets the
        # same scale where the engine unembeds itself. Asked of the family, not read from the text config:
        # Command A Vision's Cohere 2 text config has a logit_scale that its wrapper never applies.
        self._logit_scale = self.family.logit_scale_of(model)
        # Only the last position's logits are ever read: skip the unembedding of the others.
        self._last_only = ({"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters
                           else {})
        model.set_attn_implementation({self.family.text_config: ATTENTION_NAME})
        if self.family.hybrid and not self.covered_layers:
            raise UserError(f"{self.family.name}: no decoder layer has softmax attention; HeAr has no heads here")
        for ordinal, (layer_index, attention) in enumerate(zip(self.covered_layers,
                                                               self.family.attention_modules(model))):
            if getattr(attention, "layer_idx", None) != layer_index:
                raise UserError(f"decoder layer {layer_index} has no matching layer_idx; unsupported attention module")
            self.family.output_projection_of(attention)     # UnsupportedModel if it has none
            attention.hear_layer = ordinal                  # the plans' layer l (hear_attention)
            attention.hear_cross_attention = self.family.cross_attention   # its keys come from outside the sequence
        if self.family.cross_attention:
            # every other attention (the self-attention layers, an encoder's) attends as the model does under any plan
            covered = {id(module) for module in self.family.attention_modules(model)}
            for module in model.modules():
                if hasattr(module, "layer_idx") and id(module) not in covered:
                    module.hear_layer = None
        self.load_report: dict | None = None      # set by hearlib.method.loading.load_engine
        self.sanity: dict | None = None           # set by check_intact
        self._fingerprint: str | None = None
        if self.family.derived:
            self.check_derived()

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
        """An RGB PIL image from a path or an image, at the engine's resolution (:func:`load_image`)."""
        return load_image(image, self.resolution)

    def chat_text(self, prompt: str | None) -> str:
        prompt = PAPER_PROMPT if prompt is None else prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("the prompt must be a non-empty string")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        if getattr(self.processor, "chat_template", None) is None:
            raise UserError(f"{self.family.name}: the processor ({type(self.processor).__name__}) has no chat template "
                            "and the family's record gives none (Family.chat_template), so the prompt cannot be "
                            "written")
        try:
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # the template's own error, whatever it raises
            raise UserError(f"the model's chat template cannot take this prompt: {error}") from None

    def _answer_ids(self, chat_text: str, answer) -> tuple[list[int], str | None]:
        """(token ids of ``answer`` right after ``chat_text``, why they are unusable or None)."""
        if not isinstance(answer, str) or not answer.strip():
            return [], "the answer must be a non-empty word"
        try:
            if self.family.encoder_decoder:     # the answer starts the decoder's output, not the encoder's text
                chat_text = ""
            separator = "" if chat_text[-1:].isspace() or not chat_text else " "
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
        # an encoder-decoder's text tokens are the decoder's positions (docs/METHOD.md, "Encoder-decoder models")
        text_start = 0 if self.family.encoder_decoder else int(positions[-1]) + 1
        seq_len = int(inputs["decoder_input_ids"].shape[-1] if self.family.encoder_decoder else ids.numel())
        if text_start >= seq_len:
            raise UserError("the prompt has no text token after the image")
        answer_ids = self.answer_tokens(text, answer) if answer is not None else []
        prefix = ids[: int(positions[0])].tolist()
        positions = self._image_keys(inputs, positions)
        digest = hashlib.sha256(repr((prefix, int(positions.numel()))).encode()).hexdigest()[:16]
        return Sample(inputs=inputs, prompt=PAPER_PROMPT if prompt is None else prompt, answer=answer,
                      answer_id=answer_ids[0] if answer_ids else None,
                      answer_tokens=self.tokenizer.convert_ids_to_tokens(answer_ids),
                      image_positions=positions, text_start=text_start, seq_len=seq_len,
                      prefix_hash=digest, sample_id=sample_id, image_size=tuple(image.size))

    def _image_keys(self, inputs: dict, token_positions: torch.Tensor) -> torch.Tensor:
        """HeAr's image tokens: the image-token positions of the sequence, or in a cross-attention model every
        key a cross-attention layer reads (0..K-1; docs/METHOD.md, "Cross-attention models")."""
        if self.family.cross_attention_keys is None:       # an encoder's image positions are a subset of the keys
            return token_positions
        n_keys = self.family.cross_attention_keys(self.model.config, inputs)
        return torch.arange(n_keys, device=token_positions.device)

    def prefix_hash(self, prompt: str | None = None) -> str:
        """Hash of the token ids before the image (and of the image token count) for ``prompt``."""
        from PIL import Image

        size = tuple(self.resolution) if self.resolution else (224, 224)
        return self.prepare(Image.new("RGB", size), prompt=prompt).prefix_hash

    # -- the unablated forward ---------------------------------------------------------
    @torch.no_grad()
    def _recorded_forward(self, sample: Sample, keep_head_outputs: bool = True):
        plan = RecordPlan(sample.text_start, sample.image_positions)
        captured = {}

        def capture(module, args, kwargs):
            captured.update(inputs_embeds=kwargs.get("inputs_embeds"), position_ids=kwargs.get("position_ids"),
                            input_ids=kwargs.get("input_ids"),
                            per_position={name: kwargs[name] for name in self.family.decoder_position_inputs})
            if self.family.cross_attention and not args:
                captured["decoder_inputs"] = dict(kwargs)

        def head_output(layer, projection):
            # each head's share of the output projection at the last position, from what the projection
            # receives (after an output gate such as Qwen3.5's, where the attention has one)
            def hook(module, args):
                heads = args[0][0, -1].view(self.n_heads, -1)
                per_head = projection.weight.view(projection.weight.shape[0], self.n_heads, -1)   # [d, H, D]
                plan.head_outputs[layer] = torch.einsum("hd,mhd->hm", heads.to(per_head.dtype), per_head).detach()
            return hook

        handles = [self.decoder.register_forward_pre_hook(capture, with_kwargs=True)]
        if keep_head_outputs:
            projections = map(self.family.output_projection_of, self.family.attention_modules(self.model))
            handles += [p.register_forward_pre_hook(head_output(l, p)) for l, p in enumerate(projections)]
        try:
            with ablation(plan):
                logits = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[0, -1]
        finally:
            for handle in handles:
                handle.remove()
        return plan, captured, logits

    def record(self, sample: Sample) -> ForwardSummary:
        """The unablated forward: answer logit, attention statistics, per-head outputs.

        Also keeps, as ``sample.recorded`` (:class:`~hearlib.method.samples.RecordedForward`), the
        prefix/image keys and values and the text embeddings that the fast path reuses for every mask."""
        if sample.recorded is not None:
            return sample.recorded.record
        plan, captured, logits = self._recorded_forward(sample)
        embeds = captured["inputs_embeds"]
        if embeds is None and self.family.cross_attention and captured["input_ids"] is not None:
            embeds = self.decoder.get_input_embeddings()(captured["input_ids"])   # Mllama's decoder embeds ids
        if embeds is None:
            raise UserError("the decoder was not called with inputs_embeds; unsupported model")
        positions = captured["position_ids"]
        if positions is None:
            positions = torch.arange(sample.seq_len, device=self.device)[None]
        text_to_image = torch.stack([plan.text_to_image[l] for l in range(self.n_layers)])
        record = ForwardSummary(
            logit=self._adjusted(logits[None], sample)[0] if sample.answer_id is not None else float("nan"),
            predicted_id=int(logits.argmax()),
            image_attention=text_to_image.sum(-1).mean(-1).double().cpu().numpy(),
            text_to_image=text_to_image.float().cpu().numpy(),
            head_outputs=torch.stack([plan.head_outputs[l] for l in range(self.n_layers)]).float().cpu().numpy(),
            _answer_id=sample.answer_id,
        )
        sample.recorded = RecordedForward(
            record=record,
            prefix_k=[plan.keys[l] for l in range(self.n_layers)],
            prefix_v=[plan.values[l] for l in range(self.n_layers)],
            text_embeds=embeds[:, sample.text_start:].detach(),
            text_positions=positions[..., sample.text_start:].detach(),
            text_blocked=[plan.text_blocked[l] for l in range(self.n_layers)],
            prefix_reads_text=[l for l in range(self.n_layers) if plan.prefix_reads_text[l]],
            decoder_inputs=captured.get("decoder_inputs"),
            text_inputs={n: v[:, sample.text_start:].detach() for n, v in captured["per_position"].items()},
        )
        return record

    @torch.no_grad()
    def image_keys_values(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values at the image positions: [L, KVH, P_img, D] each."""
        if sample.recorded is not None:
            keys, values = sample.recorded.prefix_k, sample.recorded.prefix_v
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
        if self.family.encoder_decoder:   # the decoder's input before the answer, as generate starts it
            prompt = torch.tensor([self.family.decoder_prompt_of(self.model)] * len(images))
            inputs["decoder_input_ids"] = prompt
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
        give the same token sequence length (one fixed resolution), else UserError. A family whose
        batched forward changes a row (``Family.means_one_image_per_forward``: HunYuan-VL's M-RoPE counts
        images across the batch) runs one image per forward."""
        if self.family.means_one_image_per_forward and len(images) > 1:
            parts = [self.image_keys_values_many([image], prompt) for image in images]
            if len({digest for _, _, digest in parts}) > 1:
                raise UserError("reference images gave different image token counts; use one fixed resolution")
            return torch.cat([k for k, _, _ in parts]), torch.cat([v for _, v, _ in parts]), parts[0][2]
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
        positions = self._image_keys(inputs, positions)
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
        if self.family.encoder_decoder:
            return ("the fast path reruns a decoder's text positions over its recorded image tokens; an "
                    "encoder-decoder's decoder holds no image tokens (its cross-attention reads the encoder's output) "
                    "and no fast path is written for it; the literal path runs instead")
        if self.family.cross_attention:
            return ("a cross-attention model's prefix positions read the image too (their ablated reads change "
                    "what the text reads from them), and the fast path's text-only forward reuses no "
                    "self-attention keys of the uncovered layers; the literal path runs instead")
        if self.family.hybrid:
            return ("a hybrid decoder's linear-attention / convolution / state-space layers carry state from the "
                    "prefix and image into the text positions, which a text-only forward does not have; the "
                    "literal path runs instead")
        layers = sample.recorded.prefix_reads_text
        if not layers:
            return None
        return (f"prefix/image positions attend to text positions in decoder layer(s) {layers} under the model's "
                "own mask (e.g. a prefix-LM's bidirectional prompt), so their keys and values change under "
                "ablation and cannot be reused; the literal path runs instead")

    def path(self, sample: Sample, method: str = "fast") -> str:
        """The path :meth:`logits` takes for ``sample``: ``"fast"`` or ``"literal"``."""
        return "fast" if method == "fast" and self.fast_path_problem(sample) is None else "literal"

    @torch.no_grad()
    def _fast(self, sample, means, heads, text, image) -> np.ndarray:
        self.record(sample)
        plan = FastPlan.for_sample(sample, means, self.n_heads, heads, text, image)
        batch = heads.shape[0]
        embeds = sample.recorded.text_embeds.expand(batch, -1, -1)
        positions = sample.recorded.text_positions
        positions = positions.expand(*positions.shape[:-2], batch, positions.shape[-1])
        groups = (shared_head_prefixes(heads, self.n_heads, self.n_layers, n_text=sample.n_text)
                  if self.share_prefixes and text is None and image is None else [None] * self.n_layers)
        layers = self.family.layers_of(self.model)
        last = (last_position_only(layers[-1], len(layers) - 1, plan) if self.last_position_only
                else contextlib.nullcontext())
        with ablation(plan), computed_once(layers, plan, groups, batch), last:
            hidden = self.decoder(inputs_embeds=embeds, position_ids=positions, use_cache=False,
                                  **sample.recorded.text_inputs_for(batch)).last_hidden_state
        return self._adjusted(self._unembed(hidden[:, -1]), sample)

    @torch.no_grad()
    def _literal(self, sample, means, heads, text, image) -> np.ndarray:
        """One full forward under the mask. A cross-attention model's starts at its decoder, from the inputs the
        recorded forward gave it: no covered head lies before the decoder (the tower, the projector, an
        encoder), so what they compute is the same under every mask and is computed once a sample."""
        plan = LiteralPlan(sample.text_start, sample.image_positions, means, heads, text, image)
        decoder_inputs = sample.recorded.decoder_inputs if sample.recorded is not None else None
        with ablation(plan):
            if decoder_inputs is None:
                logits = self.model(**sample.inputs, use_cache=False, **self._last_only).logits[:, -1]
            else:
                logits = self._unembed(self.decoder(**decoder_inputs).last_hidden_state[:, -1])
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
        means.check(self, sample)
        device = self.device
        heads = as_mask(heads, None, self.n_total_heads, "head", device)
        n_masks = heads.shape[0]
        text = None if text is None else as_mask(text, n_masks, sample.n_text, "text-token", device)
        image = None if image is None else as_mask(image, n_masks, sample.n_image, "image-token", device)
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

    def intervene(self, heads, mode: str = "ablate", scale: float = 1.0, means: "MeanKV | None" = None):
        """A head set's intervention around a plain ``self.model.generate(...)``: ablate, scale or
        keep only its image reads (:func:`hearlib.method.generation_hook.intervene`); a context manager."""
        from hearlib.method.generation_hook import intervene

        return intervene(self, heads, mode=mode, scale=scale, means=means)

    def reference_logits(self, sample: Sample, means: "MeanKV", method: str = "fast") -> tuple[float, float]:
        """ℓ(1) and ℓ(0): every head intact, every head ablated (u = v = 1)."""
        cached = sample.references.get(method)         # (means, values), the means compared by identity
        if cached is None or cached[0] is not means:
            masks = np.stack([np.ones(self.n_total_heads, bool), np.zeros(self.n_total_heads, bool)])
            intact, ablated = self.logits(sample, means, masks, method=method)
            sample.references[method] = (means, (float(intact), float(ablated)))
        return sample.references[method][1]

    def normalized(self, sample: Sample, means: "MeanKV", heads, text=None, image=None, *,
                   method: str = "fast", batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """π = (ℓ(x, u, v) − ℓ(0)) / (ℓ(1) − ℓ(0))."""
        intact, ablated = self.reference_logits(sample, means, method)
        values = self.logits(sample, means, heads, text, image, method=method, batch_size=batch_size,
                             progress=progress)
        return (values - ablated) / (intact - ablated)

    # -- logit lens --------------------------------------------------------------------
    @torch.no_grad()
    def logit_lens(self, record: ForwardSummary, layer: int, head: int, k: int = 10) -> list[tuple[str, float]]:
        """Top-k tokens of one head's output at the last position, through final norm and unembedding."""
        vector = torch.as_tensor(record.head_outputs[layer, head], device=self.device, dtype=self.dtype)
        logits = self._unembed(self.final_norm(vector[None]))[0].float()
        values, ids = logits.topk(k)
        tokens = self.tokenizer.convert_ids_to_tokens(ids.tolist())
        return [(token, float(value)) for token, value in zip(tokens, values.tolist())]

    @torch.no_grad()
    def logit_lens_all(self, record: ForwardSummary, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
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
