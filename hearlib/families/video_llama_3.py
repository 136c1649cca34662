"""VideoLLaMA 3 (``video_llama_3``).

Layout: one grid of ``image_grid_thw`` patches merged ``image_merge_sizes`` (1 for images) over the
whole resized image.

Tiny model: a SigLIP-like tower with 2D RoPE at the image's own resolution (patch 8, no merge for
images), a Qwen2 decoder; min/max pixels 4000/4100 bring any square input to 64 × 64 → 8 × 8 = 64
image tokens; Qwen2-VL's template and tokens.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.qwen2_vl import QWEN_TEMPLATE, QWEN_TOKENS, ROPE
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, register

__all__ = ["video_llama_3_layout"]


def video_llama_3_layout(config, processor, sample, width, height):
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    merges = sample.inputs.get("image_merge_sizes")
    if merges is not None:
        merge = int(np.asarray(merges.cpu()).reshape(-1)[0])
    else:
        merge = int(processor.image_processor.merge_size)
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    return single_grid(h // merge, w // merge, width, height), {}


_PIXELS = dict(size={"shortest_edge": 4000, "longest_edge": 4100}, patch_size=8, merge_size=1, image_mean=[0.5] * 3,
               image_std=[0.5] * 3)

register(
    Family("VideoLLaMA 3", "video_llama_3", "VideoLlama3ForConditionalGeneration", "VideoLlama3Processor",
           resolution=(448, 448), layout=video_llama_3_layout,
           tiny=TinySpec(tokens=QWEN_TOKENS, template=QWEN_TEMPLATE, image_tokens=64, processed_size=(64, 64),
                         token_ids={"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"},
                         text={"rope_parameters": ROPE},
                         image_processor=("VideoLlama3ImageProcessor", _PIXELS),
                         video_processor=("VideoLlama3VideoProcessor", _PIXELS)),
           note="dynamic resolution (patch 14, images not merged), a Qwen2 decoder; runs at 448 × 448 (32 × 32)",
           **TRANSFORMERS_DECODER),
)
