"""The Qwen-VL lineage: Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE.

Layout (:func:`qwen_layout`, shared by every dynamic-resolution family with 2 × 2 merged patches:
GLM-4.xV, PaddleOCR-VL, EXAONE 4.5, Cohere Compass): one grid of ``(h/merge, w/merge)`` merged
tokens, from ``image_grid_thw`` and ``spatial_merge_size``; the image is resized whole.

Tiny models: vision depth 2, patch 8, temporal patch 2, 2 × 2 merge; the Qwen2-VL image processor
with ``min_pixels`` 60² and ``max_pixels`` 6000 brings every square image to 64 × 64 → 8 × 8 patches
→ 16 image tokens. Text M-RoPE ``mrope_section`` [2, 3, 3] (= head_dim / 2; Qwen3-VL interleaved).
Template ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n``
``<|vision_start|><|image_pad|><|vision_end|>{p}<|im_end|>\\n<|im_start|>assistant\\n``; no BOS; image
token ``<|image_pad|>``. Qwen2.5-VL: window attention (``window_size`` 32, full attention in block 1);
Qwen3-VL: DeepStack features of vision block 0 added at decoder layer 0's image positions.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, chatml

__all__ = ["qwen_layout", "QWEN_TOKENS", "QWEN_TEMPLATE", "QWEN_IDS", "qwen_pixels"]


def qwen_layout(config, processor, sample, width, height):
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    merge = int(config.vision_config.spatial_merge_size)
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    return single_grid(h // merge, w // merge, width, height), {}


QWEN_TOKENS = Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                      "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"),
                     dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                     {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                      "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})
QWEN_TEMPLATE = chatml(HELPFUL, "<|vision_start|><|image_pad|><|vision_end|>")
QWEN_IDS = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
            "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
ROPE = {"rope_type": "default", "rope_theta": 10000.0}
MROPE = {**ROPE, "mrope_section": [2, 3, 3]}


def qwen_pixels(mean=CLIP_MEAN, std=CLIP_STD) -> dict:
    """Qwen2-VL image-processor settings: any square input -> 64 × 64 -> 8 × 8 patches of 8 px."""
    return dict(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, min_pixels=60 * 60, max_pixels=6000,
                patch_size=8, temporal_patch_size=2, merge_size=2, image_mean=mean, image_std=std)


def _qwen_spec(text: dict, vision: dict = {}, video: str = "Qwen2VLVideoProcessor", **pixels) -> TinySpec:
    return TinySpec(tokens=QWEN_TOKENS, template=QWEN_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                    token_ids=QWEN_IDS, text=text, vision=vision,
                    image_processor=("Qwen2VLImageProcessor", qwen_pixels(**pixels)),
                    video_processor=(video, qwen_pixels(**pixels)))


_QWEN3_TEXT = {"rope_parameters": {**MROPE, "mrope_interleaved": True}}
register(
    Family("Qwen2-VL", "qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_qwen_spec({"rope_parameters": MROPE, "head_dim": DROP},
                           {"hidden_size": 64, "hidden_act": "quick_gelu"}),
           note="dynamic resolution, 2 × 2 patches merged per token, M-RoPE positions; runs at 448 × 448",
           **TRANSFORMERS_DECODER),
    Family("Qwen2.5-VL", "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_qwen_spec({"rope_parameters": MROPE, "head_dim": DROP}, {"hidden_act": "silu"}),
           note="as Qwen2-VL, with a window-attention vision tower; runs at 448 × 448",
           **TRANSFORMERS_DECODER),
    Family("Qwen3-VL", "qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_qwen_spec(_QWEN3_TEXT, video="Qwen3VLVideoProcessor", mean=[0.5] * 3, std=[0.5] * 3),
           note="as Qwen2.5-VL with patch 16 and interleaved M-RoPE; DeepStack adds vision features to the "
                "first decoder layers' hidden states at the image positions only; runs at 448 × 448 (14 × 14)",
           **TRANSFORMERS_DECODER),
    Family("Qwen3-VL-MoE", "qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_qwen_spec(dict(_QWEN3_TEXT, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                decoder_sparse_step=1),
                           video="Qwen3VLVideoProcessor", mean=[0.5] * 3, std=[0.5] * 3),
           note="Qwen3-VL with mixture-of-experts MLPs (per token; attention unchanged); runs at 448 × 448",
           **TRANSFORMERS_DECODER),
)
