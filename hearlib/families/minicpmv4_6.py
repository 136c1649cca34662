"""The MiniCPM-V 4.6 lineage (MiniCPM-V 4.6, MiniCPM-V 4.7, MiniCPM-OCR): a NaViT SigLIP tower with 2 × 2 merges
before a Qwen3.5 hybrid decoder.

Image: ``MiniCPMV4_6ImageProcessor`` resizes the whole image to a multiple of patch × 4 near
``scale_resolution`` (448) and, when the image has more pixels than ``scale_resolution²``, adds slices
(``<slice>…</slice>`` runs after the source image). At 448 × 448 it writes no slice: one
``<image_id>0</image_id><image>`` + ``<|image_pad|>`` × (h/14/4 · w/14/4) + ``</image>`` block. The tower's
window merger (``MiniCPMV4_6ViTWindowAttentionMerger``, after encoder layer ``insert_layer_id``) folds each
2 × 2 patch window into one token and ``MiniCPMV4_6Merger`` folds 2 × 2 of those, both in row-major order,
so the image tokens are one row-major grid of (h/56) × (w/56) over the whole image (``target_sizes`` / 4).

Decoder: Qwen3.5 (``text_config`` ``qwen3_5_text``): Gated DeltaNet layers between gated softmax-attention
layers; HeAr covers the full-attention layers only (:mod:`hearlib.families.qwen3_5`; docs/METHOD.md,
"Hybrid decoders"), literal path.

Tiny model: a two-layer tower of patch 8 with the window merger after layer 0, the image processor without
slices at ``scale_resolution`` 128 (any square input → 128 × 128 → 16 × 16 patches → 4 × 4 = 16 tokens), and
Qwen3.5's tiny four-layer hybrid decoder. Template: the hub's MiniCPM-V 4.6 template for one user turn
(content parts joined by a newline, the image as ``<|image_pad|>``; thinking off by default, so the generation
prompt closes an empty thinking block), as llama-cpp-python's ``MiniCPMV46ChatHandler`` reproduces it; no hub
template file is stored here.

MiniCPM-V 4.7: 4.6's classes with canvas M-RoPE (``MiniCPMV4_7Model.get_rope_index`` places each image token at its
(row, column) from ``mm_token_type_ids`` and the ``<image>``/``</image>``/``<slice>`` marker ids in the config);
same layout and tiny model plus those ids. MiniCPM-OCR: 4.6's classes in ``downsample_mode`` ``"4x"`` (no window
merger, one 2 × 2 merge: a row-major grid of h/28 × w/28; images at most ``scale_resolution²`` are upscaled to it);
its tiny image processor at ``scale_resolution`` 64 (any square input → 8 × 8 patches → 16 tokens). Both use 4.6's
template (no hub template of either is stored here).
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.qwen3_5 import HYBRID, QWEN3_5_TEXT, QWEN3_5_TOKENS
from hearlib.families.registry import Family, TinySpec, Tokens, register

__all__ = ["minicpmv_layout", "MINICPMV4_6_TEMPLATE", "MINICPMV_TOKENS"]


def minicpmv_layout(config, processor, sample, width, height):
    """One row-major grid of the source image: its patch grid (``target_sizes``) after two 2 × 2 merges."""
    sizes = np.asarray(sample.inputs["target_sizes"].cpu()).reshape(-1, 2)
    if len(sizes) != 1:
        raise UnsupportedModel(f"MiniCPM-V wrote {len(sizes) - 1} slices besides the source image; run at a size "
                               f"of at most scale_resolution² pixels ({processor.image_processor.scale_resolution}²)")
    merge = 4 if getattr(config, "downsample_mode", "16x") != "4x" else 2
    rows, cols = (int(v) // merge for v in sizes[0])
    return single_grid(rows, cols, width, height), {}


MINICPMV_NAMED = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "image_start_token": "<image>",
                  "image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>",
                  "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"}
MINICPMV_TOKENS = Tokens(QWEN3_5_TOKENS.specials + ("<image>", "</image>", "<slice>", "</slice>", "<image_id>",
                                                    "</image_id>"),
                         QWEN3_5_TOKENS.roles, MINICPMV_NAMED, words_as_added_tokens=True)
MINICPMV4_6_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% set parts = namespace(items=[]) %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{% set parts.items = parts.items + ['<|image_pad|>'] %}"
    "{% elif c['type'] == 'text' %}{% set parts.items = parts.items + [c['text']] %}{% endif %}{% endfor %}"
    "{{ (parts.items | join('\n')) | trim }}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking %}<think>\n{% else %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
# any square input -> 128 × 128 (no slices) -> 16 × 16 patches of 8 -> 4 × 4 tokens
MINICPMV_PIXELS = dict(scale_resolution=128, patch_size=8, slice_mode=False, image_mean=[0.5] * 3,
                       image_std=[0.5] * 3)
MINICPMV_IDS = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"}
# canvas M-RoPE's markers; the newline between slice rows never occurs without slices (a word-level tokenizer
# has no newline token)
MINICPMV4_7_IDS = {**MINICPMV_IDS, "image_start_id": "<image>", "image_end_id": "</image>",
                   "slice_start_id": "<slice>", "slice_end_id": "</slice>", "newline_id": "<|vision_pad|>"}
# downsample_mode '4x': any square input -> 64 × 64 -> 8 × 8 patches of 8 -> 4 × 4 tokens
MINICPM_OCR_PIXELS = dict(MINICPMV_PIXELS, scale_resolution=64)


def _minicpm_spec(token_ids: dict, processors: str, pixels: dict, config: dict | None = None) -> TinySpec:
    """The lineage's tiny spec: its tokens and template, Qwen3.5's tiny hybrid decoder, 16 image tokens from
    ``{processors}ImageProcessor`` / ``VideoProcessor`` at ``pixels`` (square inputs -> ``scale_resolution`` px)."""
    side = pixels["scale_resolution"]
    return TinySpec(tokens=MINICPMV_TOKENS, template=MINICPMV4_6_TEMPLATE, image_tokens=16, processed_size=(side, side),
                    token_ids=token_ids, text=QWEN3_5_TEXT, config=config or {},
                    image_processor=(f"{processors}ImageProcessor", pixels),
                    video_processor=(f"{processors}VideoProcessor", pixels))


_LINEAGE = dict(HYBRID, resolution=(448, 448), layout=minicpmv_layout)
register(
    Family("MiniCPM-V 4.6", "minicpmv4_6", "MiniCPMV4_6ForConditionalGeneration", "MiniCPMV4_6Processor",
           tiny=_minicpm_spec(MINICPMV_IDS, "MiniCPMV4_6", MINICPMV_PIXELS, {"insert_layer_id": 0}),
           note="NaViT SigLIP tower, window merger + 2 × 2 merger (one row-major grid of h/56 × w/56 tokens); "
                "a Qwen3.5 hybrid decoder (Gated DeltaNet in three layers of four): HeAr covers the "
                "full-attention layers only, literal path; runs at 448 × 448 (no slices: 8 × 8 tokens)",
           **_LINEAGE),
    Family("MiniCPM-V 4.7", "minicpmv4_7", "MiniCPMV4_7ForConditionalGeneration", "MiniCPMV4_7Processor",
           tiny=_minicpm_spec(MINICPMV4_7_IDS, "MiniCPMV4_6", MINICPMV_PIXELS, {"insert_layer_id": 0}),
           note="MiniCPM-V 4.6's tower and layout with canvas M-RoPE (MiniCPMV4_7Model.get_rope_index places "
                "each image token at its canvas (row, column) from mm_token_type_ids); the Qwen3.5 hybrid decoder: "
                "HeAr covers the full-attention layers only, literal path; runs at 448 × 448 (8 × 8 tokens)",
           **_LINEAGE),
    Family("MiniCPM-OCR", "minicpm_ocr", "MiniCPMOcrForConditionalGeneration", "MiniCPMOcrProcessor",
           tiny=_minicpm_spec(MINICPMV_IDS, "MiniCPMOcr", MINICPM_OCR_PIXELS),
           note="MiniCPM-V 4.6's tower in downsample_mode '4x' (no window merger: one 2 × 2 merge, a row-major "
                "grid of h/28 × w/28 tokens; small images upscaled to scale_resolution); the Qwen3.5 hybrid "
                "decoder: HeAr covers the full-attention layers only, literal path; runs at 448 × 448 (16 × 16)",
           **_LINEAGE),
)
