"""The Pixtral lineage: Mistral 3 and LightOnOCR (Mistral 3's tower and merger, a Qwen3 decoder).

Layout: one Pixtral grid of ``(h/patch/merge, w/patch/merge)`` tokens over the whole image; the
``[IMG_BREAK]`` after each row and ``[IMG_END]`` (LightOnOCR: ``<|vision_pad|>``, ``<|vision_end|>``)
are other token ids, not image tokens.

Tiny models: Pixtral vision patch 4, longest edge 48 (12 × 12 patches; Pixtral never enlarges, so
inputs from 48 px up give the same count), 2 × 2 patch merger → 6 × 6 = 36 image tokens. Mistral 3:
a Mistral decoder, template ``[INST][IMG]{p}[/INST]`` after ``<s>``; LightOnOCR: ChatML.
"""
from __future__ import annotations

import numpy as np

from hearlib.families.geometry import whole_image_grid
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, chatml

__all__ = ["mistral3_layout"]


def mistral3_layout(config, processor, sample, width, height):
    """Pixtral: the image resized whole to patches of ``patch_size``, merged ``spatial_merge_size``²."""
    h, w = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    step = int(config.vision_config.patch_size) * int(config.spatial_merge_size)
    return whole_image_grid(processor.image_processor, h // step, w // step, width, height, "Mistral 3"), {}


MISTRAL3_TEMPLATE = (
    "{% for message in messages %}[INST]"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}[IMG]{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "[/INST]{% endfor %}"
)
_VISION = dict(image_size=48, patch_size=4)
_IMAGE_PROCESSOR = ("PixtralImageProcessor", dict(size={"longest_edge": 48}, patch_size=4, image_mean=CLIP_MEAN,
                                                  image_std=CLIP_STD))
_PROCESSOR = dict(patch_size=4, spatial_merge_size=2)

register(
    Family("Mistral 3", "mistral3", "Mistral3ForConditionalGeneration", "PixtralProcessor",
           resolution=(448, 448), layout=mistral3_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]",
                              "[IMG_END]"), dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                                 pad_token="<pad>"), {"image_token": "[IMG]"}, prepend="<s>"),
               template=MISTRAL3_TEMPLATE, image_tokens=36, processed_size=(48, 48),
               token_ids={"image_token_index": "[IMG]"}, text={"sliding_window": None}, vision=_VISION,
               config=dict(spatial_merge_size=2, vision_feature_layer=-1), image_processor=_IMAGE_PROCESSOR,
               processor=_PROCESSOR),
           note="Pixtral tower at the image's own size (longest edge 1540), 2 × 2 patch merger; "
                "[IMG_BREAK] after each row and [IMG_END] are not image tokens; runs at 448 × 448 (16 × 16)",
           **TRANSFORMERS_DECODER),
    Family("LightOnOCR", "lighton_ocr", "LightOnOcrForConditionalGeneration", "LightOnOcrProcessor",
           resolution=(448, 448), layout=mistral3_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|image_pad|>",
                              "<|vision_pad|>", "<|vision_end|>"),
                             dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                             {"image_token": "<|image_pad|>", "image_break_token": "<|vision_pad|>",
                              "image_end_token": "<|vision_end|>"}),
               template=chatml(HELPFUL, "<|image_pad|>"), image_tokens=36, processed_size=(48, 48),
               token_ids={"image_token_id": "<|image_pad|>"},
               text={"sliding_window": None, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               vision=_VISION, config=dict(spatial_merge_size=2), image_processor=_IMAGE_PROCESSOR,
               processor=_PROCESSOR),
           note="Mistral 3's Pixtral tower and 2 × 2 merger with a Qwen3 decoder; break/end tokens are not image "
                "tokens; runs at 448 × 448",
           **TRANSFORMERS_DECODER),
)
