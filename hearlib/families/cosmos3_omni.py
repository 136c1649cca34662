"""Cosmos 3 Omni's reasoner (``cosmos3_omni``): Qwen3-VL's model under its own config name.

``Cosmos3OmniForConditionalGeneration`` is ``Qwen3VLForConditionalGeneration`` unchanged (its loader only
drops the unified checkpoint's generator, sound and action towers); transformers maps its image processor
to Qwen2VLImageProcessor and its video processor to Qwen3VLVideoProcessor but no processor, so the record
names Qwen3-VL's (``Qwen3VLProcessor``).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (one grid of 2 × 2 merged patches).

Tiny model: the tiny Qwen3-VL's (vision depth 2, patch 8, 2 × 2 merge, DeepStack from vision block 0,
interleaved M-RoPE [2, 3, 3]; square inputs → 64 × 64 → 16 image tokens) with Qwen2-VL's template and tokens.
"""
from __future__ import annotations

from hearlib.families.qwen2_vl import MROPE, QWEN_IDS, QWEN_TEMPLATE, QWEN_TOKENS, qwen_layout, qwen_pixels
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, register

_PIXELS = qwen_pixels(mean=[0.5] * 3, std=[0.5] * 3)

register(
    Family("Cosmos 3 Omni", "cosmos3_omni", "Cosmos3OmniForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=QWEN_TOKENS, template=QWEN_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids=QWEN_IDS, text={"rope_parameters": {**MROPE, "mrope_interleaved": True}},
                         image_processor=("Qwen2VLImageProcessor", _PIXELS),
                         video_processor=("Qwen3VLVideoProcessor", _PIXELS)),
           note="Qwen3VLForConditionalGeneration under Cosmos3OmniConfig (qwen3_vl_vision, qwen3_vl_text); "
                "transformers maps no processor to cosmos3_omni, Qwen3-VL's is used; runs at 448 × 448 (14 × 14)",
           **TRANSFORMERS_DECODER),
)
