"""PaddleOCR-VL (``paddleocr_vl``).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (dynamic resolution, patch 14, 2 × 2 merge).

Tiny model: a NaViT-style SigLIP tower (patch 8, 2 × 2 merge, no temporal patches), an ERNIE-4.5
style decoder with M-RoPE [2, 3, 3]; min/max pixels as Qwen2-VL: square inputs → 64 × 64 → 16
tokens; Qwen2-VL's template and tokens.
"""
from __future__ import annotations

from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.qwen2_vl import MROPE, QWEN_IDS, QWEN_TEMPLATE, QWEN_TOKENS, qwen_layout
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, register

register(
    Family("PaddleOCR-VL", "paddleocr_vl", "PaddleOCRVLForConditionalGeneration", "PaddleOCRVLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=QWEN_TOKENS, template=QWEN_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids=QWEN_IDS, text={"rope_parameters": MROPE},
                         image_processor=("PaddleOCRVLImageProcessor", dict(
                             size={"shortest_edge": 60 * 60, "longest_edge": 6000}, patch_size=8, merge_size=2,
                             temporal_patch_size=1, image_mean=CLIP_MEAN, image_std=CLIP_STD))),
           note="dynamic resolution as Qwen2-VL (patch 14, 2 × 2 merge, M-RoPE), an ERNIE-4.5-0.3B-style decoder; "
                "runs at 448 × 448 (16 × 16)",
           **TRANSFORMERS_DECODER),
)
