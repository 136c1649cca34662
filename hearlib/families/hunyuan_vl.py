"""HunYuan-VL (``hunyuan_vl``: HunyuanOCR).

Layout: a dynamic-resolution ViT (patch 16, patches in row-major order) whose HunYuanVLVisionPatchMerger
merges 2 × 2 patches by a stride-2 convolution, appends the learned ``image_newline`` after each row and
wraps the block in the learned ``image_begin`` and ``image_end``: ``rows · (cols + 1) + 2`` embeddings, every
one at a ``<｜hy_place▁holder▁no▁102｜>`` image-token position (HunYuanVLProcessor.replace_image_token). The
layout puts the ``rows × cols`` merged tokens on one grid over the image (rows × cols =
``image_grid_thw[1:] // merge_size``) and names the begin token, each row's newline and the end token as
non-spatial.

Tiny model: the tower 64 px / patch 8 (temporal patch 1), the HunYuan-VL image processor with
``min_pixels`` 60² and ``max_pixels`` 6000 (any square input → 64 × 64 → 8 × 8 patches → 4 × 4 merged
tokens → 4 · 5 + 2 = 22 image tokens); the dense HunYuan decoder with query/key norms, 4-axis M-RoPE
(``mrope_section`` [2, 2, 2, 2]) and the checkpoints' NTK-alpha RoPE. Template: a stand-in, not checked
against the hub's files (none offline): ``<｜hy_begin▁of▁sentence｜>``, the image as
``<｜hy_place▁holder▁no▁100｜><｜hy_place▁holder▁no▁102｜><｜hy_place▁holder▁no▁101｜>`` (the wrapping
HunYuanVLProcessor.validate_inputs demands), the text, then ``<｜hy_User｜>``, as vLLM's HunyuanOCR example
writes the prompt.

Means: ``HunYuanVLModel.get_rope_index`` counts ``image_index`` (the last M-RoPE axis) across the whole batch,
so a batched forward would rotate row b's image as image b; the record sets ``means_one_image_per_forward``.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import Panel, regular_grid
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["hunyuan_vl_layout"]


def hunyuan_vl_layout(config, processor, sample, width, height):
    """``image_begin``, rows of ``cols`` merged tokens each followed by ``image_newline``, ``image_end``."""
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    merge = int(config.vision_config.spatial_merge_size)
    rows, cols = h // merge, w // merge
    grid = regular_grid(1, cols + 1, rows, cols)
    newlines = tuple(int(v) for v in grid[:, -1] + 1)
    end = rows * (cols + 1) + 1
    panel = Panel("base", grid, (0.0, 0.0, float(width), float(height)))
    return [panel], {"image begin": (0,), "newline": newlines, "image end": (end,)}


BOS, USER = "<｜hy_begin▁of▁sentence｜>", "<｜hy_User｜>"
IMAGE_START, IMAGE_END, IMAGE = ("<｜hy_place▁holder▁no▁100｜>", "<｜hy_place▁holder▁no▁101｜>",
                                 "<｜hy_place▁holder▁no▁102｜>")
HUNYUAN_VL_TEMPLATE = (
    BOS + "{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + IMAGE_START + IMAGE + IMAGE_END +
    "{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}" + USER + "{% endif %}{% endfor %}"
)
_PIXELS = dict(min_pixels=60 * 60, max_pixels=6000, patch_size=8, temporal_patch_size=1, merge_size=2,
               image_mean=CLIP_MEAN, image_std=CLIP_STD)

register(
    Family("HunYuan-VL", "hunyuan_vl", "HunYuanVLForConditionalGeneration", "HunYuanVLProcessor",
           resolution=(512, 512), layout=hunyuan_vl_layout,
           tiny=TinySpec(
               tokens=Tokens(("<｜hy_▁pad▁｜>", "<unk>", BOS, "<｜hy_place▁holder▁no▁2｜>", USER, IMAGE_START,
                              IMAGE_END, IMAGE),
                             dict(bos_token=BOS, eos_token="<｜hy_place▁holder▁no▁2｜>", unk_token="<unk>",
                                  pad_token="<｜hy_▁pad▁｜>"),
                             {"image_token": IMAGE, "image_start_token": IMAGE_START, "image_end_token": IMAGE_END}),
               template=HUNYUAN_VL_TEMPLATE, image_tokens=22, processed_size=(64, 64),
               token_ids={"image_token_id": IMAGE, "im_start_id": IMAGE_START, "im_end_id": IMAGE_END},
               text={"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0,
                                         "factor": 1.0, "mrope_section": [2, 2, 2, 2]}},
               vision=dict(temporal_patch_size=1, max_image_size=64, min_image_size=64),
               image_processor=("HunYuanVLImageProcessor", _PIXELS)),
           note="2 × 2 merged patches on one grid, each row followed by the learned image_newline and the block "
                "wrapped in image_begin / image_end, all at image-token positions (rows · (cols + 1) + 2; the "
                "newlines, begin and end non-spatial); 4-axis M-RoPE whose image axis counts images across a batch "
                "(get_rope_index), so the means run one image per forward; runs at 512 × 512 (the checkpoint's "
                "min_pixels 512²: 16 × 16 + 16 + 2 = 274 tokens); the tiny template is a stand-in (the prompt of "
                "vLLM's HunyuanOCR example)",
           means_one_image_per_forward=True,
           **TRANSFORMERS_DECODER),
)
