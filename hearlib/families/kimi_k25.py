"""Kimi K2.5 (``kimi_k25``).

Layout: one row-major grid of ``(h/merge, w/merge)`` ``<|media_pad|>`` tokens from ``image_grid_thw``
(MoonViT, Kimi_K25VisionModel: patch 14, ``merge_kernel_size`` 2 × 2 pooled into one token by
``temporal_merge`` and Kimi_K25MultimodalProjection). Kimi_K25ImageProcessor never upscales (``navit_resize``
scale ≤ 1) and pads the resized image to multiples of patch × merge; the layout refuses a padded image, so
the family runs at 448 × 448 (32 × 32 patches → 16 × 16 = 256 tokens, no padding). The decoder is
DeepSeek-V3 (multi-head latent attention: per-head keys and values expanded from a shared latent by
``kv_b_proj``, then the attention interface; mixture-of-experts MLPs).

Tiny model: MoonViT 2 layers of width 32, patch 4, a 12 × 12 learned position table; the image processor
with ``max_height`` 12 patches brings every square input of 48 px or more to 48 × 48 → 12 × 12 patches →
6 × 6 = 36 image tokens of 8 px (the position table, drawn at std 1 by Kimi_K25PreTrainedModel._init_weights,
scaled by 0.05 so that it does not drown the 4 px patches); a DeepSeek-V3 decoder with MLA (q/kv LoRA ranks 32, rope 8 + nope 16 query/key dims, value 16)
whose layer 1 is MoE (4 routed experts, top 2, one shared). Template: a stand-in not checked against hub
files (none here): Kimi's turn tokens ``<|im_user|>user<|im_middle|>…<|im_end|>`` and
``<|im_assistant|>assistant<|im_middle|>``, the image as ``<|media_begin|>image<|media_content|>``
``<|media_pad|><|media_end|>`` (the block Kimi_K25Processor writes for video frames), no system turn.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid, size_value
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["kimi_k25_layout"]


def kimi_k25_layout(config, processor, sample, width, height):
    """One grid of merged patches over the whole image; a padded image (side not a multiple of
    patch × merge after the never-upscaling resize) is refused."""
    from transformers.models.kimi_k25.image_processing_kimi_k25 import navit_resize

    t, rows, cols = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    if t != 1:
        raise UnsupportedModel(f"Kimi K2.5: image_grid_thw has {t} temporal patches; one image expected")
    image_processor = processor.image_processor
    patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
    resized, padded = navit_resize(height, width, patch, merge, int(image_processor.max_patches),
                                   int(size_value(image_processor.size, "max_height")))
    if resized != padded:
        raise UnsupportedModel(f"Kimi K2.5 pads the {resized[1]} × {resized[0]} resized image to {padded[1]} × "
                               f"{padded[0]}; run at a resolution whose sides are multiples of {patch * merge} px")
    return single_grid(rows // merge, cols // merge, width, height), {}


KIMI_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|im_system|>system<|im_middle|>"
    "{% elif message['role'] == 'user' %}<|im_user|>user<|im_middle|>"
    "{% else %}<|im_assistant|>assistant<|im_middle|>{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|media_begin|>image<|media_content|><|media_pad|><|media_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_assistant|>assistant<|im_middle|>{% endif %}"
)
def _quiet_position_table(model) -> None:
    """Scale MoonViT's learned position table (trunc_normal_ at std 1) down to the patch embeddings' size."""
    model.model.vision_tower.patch_embed.pos_emb.position_embeddings.mul_(0.05)


_MLA_MOE = dict(num_key_value_heads=4, head_dim=DROP, q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8,
                qk_nope_head_dim=16, v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                n_group=1, topk_group=1, moe_intermediate_size=32, first_k_dense_replace=1,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
# any square input of 48 px or more -> 48 × 48 (max 12 patches a side) -> 12 × 12 patches of 4 px
_PIXELS = dict(size={"max_height": 12, "max_width": 12}, patch_size=4, merge_size=2, image_mean=[0.5] * 3,
               image_std=[0.5] * 3)

register(
    Family("Kimi K2.5", "kimi_k25", "Kimi_K25ForConditionalGeneration", "Kimi_K25Processor",
           resolution=(448, 448), layout=kimi_k25_layout,
           tiny=TinySpec(
               tokens=Tokens(("[BOS]", "[EOS]", "<unk>", "[PAD]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>",
                              "<|im_system|>", "<|im_middle|>", "<|media_begin|>", "<|media_content|>",
                              "<|media_end|>", "<|media_pad|>", "<|kimi_k25_video_placeholder|>"),
                             dict(bos_token="[BOS]", eos_token="[EOS]", unk_token="<unk>", pad_token="[PAD]"),
                             {"image_token": "<|media_pad|>", "video_token": "<|kimi_k25_video_placeholder|>"}),
               template=KIMI_TEMPLATE, image_tokens=36, processed_size=(48, 48),
               token_ids={"image_token_id": "<|media_pad|>", "video_token_id": "<|kimi_k25_video_placeholder|>",
                          "vision_start_token_id": "<|media_begin|>", "vision_end_token_id": "<|media_end|>"},
               text=dict(model_type="deepseek_v3", **_MLA_MOE),
               vision=dict(patch_size=4, pos_emb_height=12, pos_emb_width=12), config=dict(projection_hidden_size=32),
               image_processor=("Kimi_K25ImageProcessor", _PIXELS), video_processor=("Kimi_K25VideoProcessor", _PIXELS),
               weights=_quiet_position_table),
           note="MoonViT (patch 14) with 2 × 2 patches pooled per <|media_pad|> token before a DeepSeek-V3 decoder "
                "(multi-head latent attention, mixture of experts); the image processor never upscales and pads "
                "to multiples of 28 px, so the family runs at 448 × 448 (16 × 16 tokens)",
           **TRANSFORMERS_DECODER),
)
