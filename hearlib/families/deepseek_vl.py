"""DeepSeek-VL (``deepseek_vl``).

Layout: one SigLIP grid (no class token) over the image padded to a square; only square inputs (no
padding) are supported.

Tiny model: SigLIP 64 px / patch 8 → 8 × 8 = 64 ``<image_placeholder>`` tokens, an MLP aligner, a
Llama decoder; the image processor pads to a square, then resizes to 64 × 64. Template
``User: <image_placeholder>{p}\\n\\nAssistant:`` after ``<s>`` (which the tokenizer prepends).
"""
from __future__ import annotations

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import pair, whole_image_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["deepseek_vl_layout"]


def deepseek_vl_layout(config, processor, sample, width, height):
    if width != height and getattr(processor.image_processor, "do_pad", False):
        raise UnsupportedModel("DeepSeek-VL pads a non-square image to a square; run at a square resolution")
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(pair(vision.image_size), pair(vision.patch_size)))
    return whole_image_grid(processor.image_processor, rows, cols, width, height, "DeepSeek-VL"), {}


DEEPSEEK_VL_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image_placeholder>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

register(
    Family("DeepSeek-VL", "deepseek_vl", "DeepseekVLForConditionalGeneration", "DeepseekVLProcessor",
           resolution=(384, 384), layout=deepseek_vl_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<unk>", "<s>", "</s>", "<image_placeholder>"),
                             dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
                             {"image_token": "<image_placeholder>"}, prepend="<s>"),
               template=DEEPSEEK_VL_TEMPLATE, image_tokens=64, processed_size=(64, 64),
               token_ids={"image_token_id": "<image_placeholder>"}, vision={"vision_use_head": False},
               image_processor=("DeepseekVLImageProcessor", dict(size={"height": 64, "width": 64},
                                                                 image_mean=[0.5] * 3, image_std=[0.5] * 3)),
               processor={"num_image_tokens": 64}),
           note="one SigLIP grid (384 px / patch 16: 24 × 24 = 576 tokens) over the image padded to a square; "
                "runs at 384 × 384 (no padding)",
           **TRANSFORMERS_DECODER),
)
