"""Molmo2 (``molmo2``).

Layout: Molmo2ImageProcessor makes a low-resolution view (the image resized to the ``size`` crop, ``crop/patch``
patches a side) and a high-resolution canvas (the image resized, without keeping its aspect ratio, to
``tiling · window + margins``, cut into overlapping crops whose ``overlap_margins`` patches are dropped, so every
canvas patch comes from exactly one crop). Each view's patch grid is grouped into ``pooling_size`` windows
(``arange_for_pooling``: the grid padded with -1 to a multiple of the window, half before, half after), and
Molmo2Adapter turns each window into one image token (attention pooling of its patches, queried by their mean),
whose feature is *added* to the ``<im_patch>`` embedding. Molmo2Processor writes the low-resolution block,
then the high-resolution one, each row of ``<im_patch>`` tokens followed by ``<im_col>`` and the blocks between
``<low_res_im_start>``/``<im_start>`` and ``<im_end>``; only ``<im_patch>`` carries ``image_patch_id``. So the image
tokens are two row-major grids over the whole image (the padded windows reach past its edges by the padding);
no token is non-spatial. The decoder is softmax attention whose mask (``mm_token_type_ids``) makes every image
block token (``<im_col>`` and ``<im_end>`` too) attend to every other: the ``<im_col><im_end>`` after the last
``<im_patch>`` are text positions that image positions read, so the engine runs the literal path. Runs at
644 × 644 (2 × 2 crops: a 46 × 46 patch canvas → 23 × 23 tokens, and the 27 × 27 patch low-resolution view
→ 14 × 14: 725 image tokens).

Tiny model: a vision tower on 32 px crops of patch 4 (8 × 8 patches), overlap margins of 2 patches and at most 4
crops, 2 × 2 pooling, an adapter reading the last and the first layer (weights drawn at std 0.2: at 0.02 its
two attention and MLP stages bring the image features to ~1e-9), ``additional_vocab_size`` 0 (the word-level
tokenizer's special tokens lie inside ``vocab_size``; the real ones are the 128 rows Molmo2TextModel.embed_tokens
appends past it, which lm_head never emits); any square input above 32 px gives 2 × 2
crops on a 48 px canvas (12 × 12 patches → 6 × 6 tokens) and the 32 px low-resolution view (4 × 4): 52 image
tokens.
Template: a stand-in written from the hub's allenai/Molmo2-4B chat template (seen in a public copy of the hub
files, not checked against the hub here): the image placeholder ``<|image|>`` first, then
``<|im_start|>user\\n{p}<|im_end|>\\n<|im_start|>assistant\\n``; Molmo2Processor puts the tokenizer's BOS
(``<|im_end|>``) before it.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UserError
from hearlib.families.geometry import Panel, regular_grid, size_value
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["molmo2_layout"]


def _pooled_panel(name: str, start: int, patches: tuple[int, int], pool: tuple[int, int], width, height) -> Panel:
    """The grid of pooling windows over a ``patches`` (rows, cols) grid that covers the whole image, padded as
    ``arange_for_pooling`` pads it (the windows of its edges reach past the image by the padding)."""
    box = []
    for n, p, size in zip(patches, pool, (height, width)):
        pad = -n % p
        before, after = pad // 2, pad - pad // 2
        box.append((-before * size / n, (n + after) * size / n))
    (y0, y1), (x0, x1) = box
    rows, cols = (-(-n // p) for n, p in zip(patches, pool))
    return Panel(name, regular_grid(start, cols, rows, cols), (x0, y0, x1, y1))


def molmo2_layout(config, processor, sample, width, height):
    """The low-resolution grid, then the high-resolution canvas grid, each over the whole image."""
    from transformers.models.molmo2.image_processing_molmo2 import compute_crop_geometry

    image_processor = processor.image_processor
    crop, patch = int(size_value(image_processor.size, "height")), int(image_processor.patch_size)
    pool = tuple(int(v) for v in image_processor.pooling_size)
    low_h, low_w, high_h, high_w = (int(v) for v in np.asarray(sample.inputs["image_grids"].cpu())[0])
    _, _, canvas_h, canvas_w = compute_crop_geometry(height, width, max_crops=image_processor.max_crops,
                                                     overlap_margins=image_processor.overlap_margins,
                                                     crop_size=crop, patch_size=patch)
    low = _pooled_panel("low-res", 0, (crop // patch, crop // patch), pool, width, height)
    high = _pooled_panel("high-res", low_h * low_w, (canvas_h // patch, canvas_w // patch), pool, width, height)
    if (low.shape, high.shape) != ((low_h, low_w), (high_h, high_w)):
        raise UserError(f"Molmo2: image_grids {[low_h, low_w, high_h, high_w]}, but the processor settings give "
                        f"{[*low.shape, *high.shape]} for a {width}×{height} image")
    return [low, high], {}


MOLMO2_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is not string %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}{% else %}"
    "{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') %}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{% if not loop.first %}<|im_end|>\n{% endif %}<|im_start|>user\n{{ text }}"
    "<|im_end|>\n{% else %}<|im_start|>assistant\n{{ text }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_PIXELS = dict(size={"height": 32, "width": 32}, patch_size=4, overlap_margins=[2, 2], max_crops=4,
               pooling_size=[2, 2], image_mean=[0.5] * 3, image_std=[0.5] * 3)
_ADAPTER = dict(vision_feature_layer=[-1, 0], hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                head_dim=16, intermediate_size=64, text_hidden_size=64, initializer_range=0.2)

register(
    Family("Molmo2", "molmo2", "Molmo2ForConditionalGeneration", "Molmo2Processor",
           resolution=(644, 644), layout=molmo2_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<im_start>", "<im_end>",
                              "<im_patch>", "<im_col>", "<low_res_im_start>", "<|image|>", "<im_low>",
                              "<frame_start>", "<frame_end>", "<|video|>"),
                             dict(bos_token="<|im_end|>", eos_token="<|im_end|>", unk_token="<unk>",
                                  pad_token="<|endoftext|>"),
                             {"image_token": "<|image|>", "video_token": "<|video|>"}),
               template=MOLMO2_TEMPLATE, image_tokens=52, processed_size=(48, 48),
               token_ids={"image_patch_id": "<im_patch>", "image_start_token_id": "<im_start>",
                          "low_res_image_start_token_id": "<low_res_im_start>", "image_end_token_id": "<im_end>",
                          "frame_start_token_id": "<frame_start>", "frame_end_token_id": "<frame_end>"},
               text={"additional_vocab_size": 0, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               vision=dict(image_size=[32, 32], patch_size=4, num_position_embeddings=64),
               config={"adapter_config": _ADAPTER},
               image_processor=("Molmo2ImageProcessor", _PIXELS),
               video_processor=("Molmo2VideoProcessor", dict(size={"height": 32, "width": 32}, patch_size=4,
                                                             pooling_size=[2, 2]))),
           note="a low-resolution view and overlapping high-resolution crops, each pooled 2 × 2 into <im_patch> "
                "tokens (features added to the token's embedding) in two row-major grids over the image; "
                "<im_col>/<im_start>/<im_end> are not image tokens; image-block tokens attend to each other "
                "(mm_token_type_ids), the trailing <im_col><im_end> included, so the literal path; "
                "runs at 644 × 644 (2 × 2 crops, 725 tokens)",
           **TRANSFORMERS_DECODER),
)
