"""Unlimited-OCR (``unlimited_ocr``).

Layout: DeepSeek-OCR-style views. Each view goes through a SAM ViT (UnlimitedOcrSamVisionEncoder: patches,
neck, two stride-2 convolutions) whose feature map is the patch embedding of a CLIP-style encoder
(UnlimitedOcrVisionEncoder, class token dropped); the two are concatenated per cell and projected, so every
image token is one cell of its view's grid (no learned queries). UnlimitedOcrModel.get_image_features writes,
all with the ``<image>`` id (UnlimitedOcrProcessor.replace_image_token): when the image is larger than
``tile_size`` and ``crop_to_patches`` is on, the tiles first, as one grid of ``rows·q × cols·q`` cells over the
image (the tiles cover the image resized to ``cols × rows`` tiles) with an ``image_newline`` after every row;
then the global view (the image resized, keeping its aspect ratio, to ``max(size)`` and padded to a square),
``q × q`` cells with a newline after every row; then one ``view_separator``. The layout puts the tile grid and
the global grid on the image and names the newlines and the separator non-spatial. The decoder is a
DeepSeek-V2-style mixture-of-experts decoder with multi-head softmax attention; its
``reference_sliding_attention`` reads every prefill position (a cache's window applies to generated tokens
only). Runs at 640 × 640 (no tiles at the real ``tile_size`` 640: one 1024 px global view of 16 × 16 cells,
273 tokens).

Tiny model: SAM 16 px with patch 1 (16 × 16 → 4 × 4 after the two stride-2 convolutions; weights drawn at std
0.02, not the config's ``initializer_range`` 1e-10, under which every image gives the same tokens) under a CLIP-style
encoder of patch 4 (its 4 × 4 positions), a decoder whose layer 1 is MoE (4 routed experts, top 2, one shared),
with 4 key/value heads (multi-head: modeling_unlimited_ocr.py's one eager_attention_forward, which its text
attention falls back to, never calls repeat_kv; the real config is multi-head too);
the image processor with ``size`` and ``tile_size`` 16 and 2 to 4 tiles, so every square input above 16 px
gives 2 × 2 tiles (8 × 9 tokens) and the global view (4 × 5) + the separator: 93 image tokens. Template: a
stand-in not checked against hub files (none here): DeepSeek-OCR's plain prompt ``<image>\\n{p}`` after the
tokenizer's BOS, no roles.
"""
from __future__ import annotations

import math

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import Panel, regular_grid, size_value
from hearlib.families.deepseek_ocr2 import deepseek_ocr_sam, deepseek_ocr_spec
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, register

__all__ = ["unlimited_ocr_layout"]


def _views(processor, sample) -> tuple[int, int, int, int]:
    """(tile columns, tile rows, cells per tile side, cells per global side) of the sample's one image."""
    image_processor = processor.image_processor
    side = max(int(size_value(image_processor.size, "height")), int(size_value(image_processor.size, "width")))
    per_global = math.ceil(side // processor.patch_size / processor.downsample_ratio)
    per_tile = math.ceil(image_processor.tile_size // processor.patch_size / processor.downsample_ratio)
    n_tiles = int(np.asarray(sample.inputs["num_local_patches"]).ravel()[0])
    cols, rows = (int(v) for v in np.asarray(sample.inputs["patches_grid"]).reshape(-1, 2)[0])
    return (cols, rows, per_tile, per_global) if n_tiles else (0, 0, per_tile, per_global)


def unlimited_ocr_layout(config, processor, sample, width, height):
    """The tile grid (when tiled) and the global grid over the image; row newlines and the separator non-spatial."""
    cols, rows, per_tile, per_global = _views(processor, sample)
    image_processor = processor.image_processor
    side = max(int(size_value(image_processor.size, "height")), int(size_value(image_processor.size, "width")))
    padded = image_processor.crop_to_patches or side > image_processor.maximum_pad_value
    if width != height and padded:
        raise UnsupportedModel("Unlimited-OCR pads a non-square image to a square for its global view; "
                               "run at a square resolution")
    whole = (0.0, 0.0, float(width), float(height))
    panels, newlines, start = [], [], 0
    if cols:
        tile_rows, tile_cols = rows * per_tile, cols * per_tile
        panels.append(Panel("tiles", regular_grid(0, tile_cols + 1, tile_rows, tile_cols), whole))
        newlines += [r * (tile_cols + 1) + tile_cols for r in range(tile_rows)]
        start = tile_rows * (tile_cols + 1)
    panels.append(Panel("global view", regular_grid(start, per_global + 1, per_global, per_global), whole))
    newlines += [start + r * (per_global + 1) + per_global for r in range(per_global)]
    separator = start + per_global * (per_global + 1)
    return panels, {"row newlines": tuple(newlines), "view separator": (separator,)}


_ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=16,
                patch_size=4)
_PIXELS = dict(size={"height": 16, "width": 16}, tile_size=16, crop_to_patches=True, min_patches=2, max_patches=4,
               image_mean=[0.5] * 3, image_std=[0.5] * 3)

register(
    Family("Unlimited-OCR", "unlimited_ocr", "UnlimitedOcrForConditionalGeneration", "UnlimitedOcrProcessor",
           resolution=(640, 640), layout=unlimited_ocr_layout,
           tiny=deepseek_ocr_spec(93, 16, dict(sam_config=deepseek_ocr_sam(16, 8), encoder_config=_ENCODER),
                                  ("UnlimitedOcrImageProcessor", _PIXELS),
                                  text=dict(sliding_window=8, num_key_value_heads=4)),
           note="SAM + CLIP cells (one token per cell, no queries): tiles as one rows·q × cols·q grid, then the "
                "global view q × q (16 × 16 at 1024 px), each row followed by image_newline, then view_separator, "
                "all <image>; newlines and separator non-spatial; MoE decoder with multi-head softmax attention "
                "(reference sliding window only past the prefill); runs at 640 × 640 (no tiles: 273 tokens)",
           **TRANSFORMERS_DECODER),
)
