"""Gemma 3 (``gemma3``).

Layout: the SigLIP grid of ``(image_size/patch)²`` patches average-pooled to
``sqrt(mm_tokens_per_image)²`` tokens (16 × 16 for the real model) over the whole image, resized
without a crop; pan-and-scan crops are refused. ``<start_of_image>``/``<end_of_image>`` are not image
tokens.

Tiny model: SigLIP 64 px / patch 8 (8 × 8 patches) average-pooled to 4 × 4 = 16 tokens; the decoder's
layer 0 is a sliding-window layer with a window (12) shorter than the sequence, layer 1 full
attention; ``query_pre_attn_scalar`` 24 (scale 24^-1/2, not head_dim^-1/2). Template
``<bos><start_of_turn>user\\n<start_of_image>{p}<end_of_turn>\\n<start_of_turn>model\\n``; the processor
expands ``<start_of_image>`` to ``<start_of_image>`` + 16 × ``<image_soft_token>`` + ``<end_of_image>``;
``token_type_ids`` mark the image block (bidirectional).
"""
from __future__ import annotations

import math

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import whole_image_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["gemma3_layout", "GEMMA_ROLES", "SLIDING_THEN_FULL"]


def gemma3_layout(config, processor, sample, width, height):
    if int(sample.inputs["pixel_values"].shape[0]) != 1:
        raise UnsupportedModel("Gemma 3: pan-and-scan crops are not supported; turn do_pan_and_scan off")
    side = math.isqrt(int(config.mm_tokens_per_image))
    if side * side != int(config.mm_tokens_per_image):
        raise UnsupportedModel(f"Gemma 3: mm_tokens_per_image={config.mm_tokens_per_image} is not a square")
    return whole_image_grid(processor.image_processor, side, side, width, height, "Gemma 3"), {}


GEMMA_ROLES = dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")
# layer 0 slides over a window shorter than a tiny prompt (about 40 tokens), layer 1 sees everything
SLIDING_THEN_FULL = dict(sliding_window=12, layer_types=["sliding_attention", "full_attention"])
# as the hub's, without system-turn handling: <bos>, turns, <start_of_image> where the image goes
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

register(
    Family("Gemma 3", "gemma3", "Gemma3ForConditionalGeneration", "Gemma3Processor",
           resolution=None, layout=gemma3_layout,
           tiny=TinySpec(
               tokens=Tokens(("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                              "<start_of_image>", "<end_of_image>", "<image_soft_token>"), GEMMA_ROLES,
                             {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                              "eoi_token": "<end_of_image>"}, extra_words=("model",)),
               template=GEMMA3_TEMPLATE, image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_index": "<image_soft_token>", "boi_token_index": "<start_of_image>",
                          "eoi_token_index": "<end_of_image>"},
               text=dict(query_pre_attn_scalar=24, **SLIDING_THEN_FULL), vision={"vision_use_head": False},
               config={"mm_tokens_per_image": 16},
               image_processor=("Gemma3ImageProcessor", dict(
                   do_resize=True, size={"height": 64, "width": 64}, resample=2, do_rescale=True,
                   rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                   do_convert_rgb=True, do_pan_and_scan=False)),
               processor={"image_seq_length": 16}),
           note="SigLIP 896 px average-pooled to 16 × 16 = 256 tokens, resized whole (pan-and-scan off); "
                "the image block attends bidirectionally and 5 of 6 layers use a sliding window (the "
                "engine follows the model's masks); <start_of_image>/<end_of_image> are not image tokens",
           **TRANSFORMERS_DECODER),
)
