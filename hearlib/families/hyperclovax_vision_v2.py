"""HyperCLOVA X SEED Vision V2 (``hyperclovax_vision_v2``): a Qwen2.5-VL tower under a HyperCLOVA X decoder.

``HyperCLOVAXVisionV2Model`` runs transformers' Qwen2.5-VL vision tower (``qwen2_5_vl_vision``: window
attention, 2 × 2 merged patches), projects each merged token with one Linear (``projector``) and writes the
tokens over ``<|image_pad|>`` placeholders (``HyperCLOVAXVisionV2Processor.replace_image_token``: one per merged
block); the decoder is HyperCLOVA X (``text_config`` ``hyperclovax``: softmax attention through transformers'
attention interface with scale ``attention_multiplier``, muP embedding/residual multipliers, post-norms, 1-D
RoPE). The wrapper multiplies the logits by ``text_config.logits_scaling``
(``HyperCLOVAXVisionV2ForConditionalGeneration.forward``), which the engine applies where it unembeds.

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (one grid of ``(h/2, w/2)`` merged tokens).

Tiny model: the tiny Qwen2.5-VL's tower (depth 2, patch 8, window 32 with full attention in block 1, 2 × 2
merge; the Qwen2-VL image processor brings every square input to 64 × 64 → 16 image tokens) and a
HyperCLOVA X decoder with non-trivial muP multipliers (attention 0.2, embedding 2, residual 0.8, logits 0.5).
Tokens and template: Qwen2-VL's ChatML (the hub's chat template is not available here; the processor writes
Qwen's ``<|image_pad|>``).
"""
from __future__ import annotations

import dataclasses

from hearlib.families.qwen2_vl import QWEN_IDS, QWEN_TEMPLATE, QWEN_TOKENS, ROPE, qwen_layout, qwen_pixels
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, register

__all__ = ["hyperclovax_logit_scale"]

# transformers maps hyperclovax_vision_v2 to GPT2Tokenizer, which rebuilds a BPE from the saved vocabulary
HYPERCLOVAX_TOKENS = dataclasses.replace(QWEN_TOKENS, words_as_added_tokens=True)


def hyperclovax_logit_scale(model) -> float:
    """``text_config.logits_scaling``: HyperCLOVAXVisionV2ForConditionalGeneration computes
    ``self.lm_head(hidden_states) * self.config.text_config.logits_scaling``."""
    return float(model.config.text_config.logits_scaling)


register(
    Family("HyperCLOVA X SEED Vision V2", "hyperclovax_vision_v2", "HyperCLOVAXVisionV2ForConditionalGeneration",
           "HyperCLOVAXVisionV2Processor", resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=HYPERCLOVAX_TOKENS, template=QWEN_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids={k: QWEN_IDS[k] for k in ("image_token_id", "video_token_id")},
                         text=dict(rope_parameters=ROPE, attention_multiplier=0.2, embedding_multiplier=2.0,
                                   residual_multiplier=0.8, logits_scaling=0.5),
                         vision={"hidden_act": "silu"},
                         image_processor=("Qwen2VLImageProcessor", qwen_pixels()),
                         video_processor=("Qwen2VLVideoProcessor", qwen_pixels())),
           note="Qwen2.5-VL tower and layout (patch 14, 2 × 2 merge) with a HyperCLOVA X decoder (muP multipliers, "
                "post-norms); the wrapper scales the logits by logits_scaling, which the engine applies too; "
                "runs at 448 × 448 (16 × 16)",
           logit_scale=hyperclovax_logit_scale, **TRANSFORMERS_DECODER),
)
