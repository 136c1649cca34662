"""EXAONE 4.5 (``exaone4_5``).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (a Qwen2.5-VL-style tower: patch 14, 2 × 2 merge).

Tiny model: the Qwen2.5-VL-style tower (window attention, full attention in block 1, patch 8, 2 × 2
merge; the Qwen2-VL image processor: square inputs → 64 × 64 → 16 tokens) and an EXAONE 4 decoder
whose layer 0 has a sliding window (12) shorter than the sequence; Qwen2-VL's template and tokens.
"""
from __future__ import annotations

from hearlib.families.gemma3 import SLIDING_THEN_FULL
from hearlib.families.qwen2_vl import QWEN_TEMPLATE, QWEN_TOKENS, ROPE, qwen_layout, qwen_pixels
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, register

register(
    Family("EXAONE 4.5", "exaone4_5", "Exaone4_5_ForConditionalGeneration", "Exaone4_5_Processor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=QWEN_TOKENS, template=QWEN_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids={"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"},
                         text=dict(rope_parameters=ROPE, **SLIDING_THEN_FULL),
                         image_processor=("Qwen2VLImageProcessor", qwen_pixels()),
                         video_processor=("Qwen2VLVideoProcessor", qwen_pixels())),
           note="Qwen2.5-VL-style tower and layout (patch 14, 2 × 2 merge) with an EXAONE 4 decoder "
                "(sliding-window and global layers); runs at 448 × 448 (16 × 16)",
           **TRANSFORMERS_DECODER),
)
