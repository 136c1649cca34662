"""Granite Docling (``granite_docling``: granite-for-docling-500m).

Layout: Idefics3's wrapper over a SigLIP tower that sees the page as 512 px tiles on the grid that best fits
its aspect ratio (GotOcr2's crop, GraniteDoclingImageProcessor.get_tile_grid) and, for more than one tile,
a thumbnail of the whole page last. GraniteDoclingConnector pixel-shuffles each tile by ``scale_factor`` (4:
32 × 32 patches → 8 × 8 = 64 ``<image>`` tokens, row-major; the fine route, ``tile_fine_mask``, by half of
it: 16 × 16), so each tile is one grid over its part of the page. The ``<fake_token_around_image>``,
``<row_r_col_c>`` and ``<global-img>`` tokens the processor writes around the tiles are not image tokens.
GraniteDoclingDeepStackMerger features are added to the decoder's hidden states at the image positions after
its first layers (as Qwen3-VL's DeepStack), a Granite decoder (embedding, residual and attention multipliers)
under ``model.text_model``, and the wrapper divides the logits by ``text_config.logits_scaling``.

Tiny model: the tower 64 px / patch 8 with ``scale_factor`` 2 (8 × 8 patches → 4 × 4 = 16 tokens a tile),
DeepStack from vision layer 0 into decoder layer 0, the Granite decoder with the checkpoint's residual (0.263)
and attention (1/64) multipliers but ``embedding_multiplier`` 1 (at 12 the random embeddings drown every
attention output, so no mask moves the logit) and ``logits_scaling`` 0.5 (logits × 2, so that the scale
is exercised and the answer logit still moves); the image processor at 64 px tiles, no splitting (one tile). Template: granite-docling-258M's (a hub
model of type idefics3), ``<|start_of_role|>user<|end_of_role|><image>{p}<|end_of_text|>\\n``
``<|start_of_role|>assistant<|end_of_role|>``, a stand-in not checked against granite-for-docling-500m's
own hub files (none offline).
"""
from __future__ import annotations

from hearlib.families.idefics3 import tiles_then_whole
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["granite_docling_layout", "GRANITE_TEMPLATE", "granite_logit_scale"]


def granite_docling_layout(config, processor, sample, width, height):
    """The tiles row-major, each one grid over its part of the page, then the thumbnail of the whole page."""
    vision = config.vision_config
    scale = int(vision.scale_factor) // (2 if "tile_fine_mask" in sample.inputs else 1)
    rows, cols = processor.image_processor.get_tile_grid(height, width)
    if rows * cols == 1:                     # one tile and no thumbnail: the page itself
        return tiles_then_whole(0, 0, vision, scale, width, height, "base"), {}
    return tiles_then_whole(rows, cols, vision, scale, width, height, "thumbnail"), {}


GRANITE_TEMPLATE = (
    "{% for message in messages %}<|start_of_role|>{{ message['role'] }}<|end_of_role|>"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endif %}<|end_of_text|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}"
)
_TOKENS = Tokens(("<|pad|>", "<unk>", "<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>",
                  "<fake_token_around_image>", "<image>", "<global-img>")
                 + tuple(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)),
                 dict(eos_token="<|end_of_text|>", unk_token="<unk>", pad_token="<|pad|>"),
                 {"image_token": "<image>"})


def granite_logit_scale(model) -> float:
    """A Granite wrapper's logits / text_config.logits_scaling, as a factor."""
    return 1.0 / float(model.config.text_config.logits_scaling)


register(
    Family("Granite Docling", "granite_docling", "GraniteDoclingForConditionalGeneration", "GraniteDoclingProcessor",
           resolution=(512, 512), layout=granite_docling_layout, logit_scale=granite_logit_scale,
           tiny=TinySpec(
               tokens=_TOKENS, template=GRANITE_TEMPLATE, image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_id": "<image>"},
               text=dict(embedding_multiplier=1.0, logits_scaling=0.5), vision=dict(scale_factor=2),
               image_processor=("GraniteDoclingImageProcessor", dict(
                   size={"height": 64, "width": 64}, crop_to_patches=False, image_mean=[0.5] * 3,
                   image_std=[0.5] * 3)),
               processor={"image_seq_len": 16}),
           note="Idefics3-style 512 px tiles (+ a thumbnail when split), each pixel-shuffled by 4 into 8 × 8 tokens; "
                "row/col, <global-img> and <fake_token_around_image> are not image tokens; DeepStack features added "
                "at the image positions after the first decoder layers; Granite decoder under model.text_model, "
                "logits ÷ logits_scaling; runs at 512 × 512 (one tile: 64 tokens)",
           **dict(TRANSFORMERS_DECODER, decoder="model.text_model")),
)
