"""The LFM-VL lineage: LFM2-VL (a SigLIP2 NaFlex tower, a 2 × 2 pixel unshuffle, an LFM2 hybrid decoder) and
LFM3-VL (a Qwen2-VL-style tower of gated convolutions and attention, an LFM3 hybrid decoder).

Image: ``Lfm2VlImageProcessor`` resizes an image of at most ``max_image_tokens`` (256) merged patches (times
``max_pixels_tolerance``) to multiples of 32 px keeping its aspect ratio, and tiles a larger one into 512 px tiles
plus a thumbnail. At 512 × 512 it writes one tile: ``<|image_start|>`` + ``<image>`` × 16 · 16 + ``<|image_end|>``.
``Lfm2VlModel.get_image_features`` unshuffles each 2 × 2 block of SigLIP2 patches into one token, blocks in
row-major order, so the image tokens are one row-major grid of (h/32) × (w/32) over the whole image
(``spatial_shapes`` / ``downsample_factor``).

Decoder: LFM2 (``text_config`` ``lfm2``): ``layer_types`` interleaves ``"conv"`` layers (``Lfm2ShortConv`` under
``conv``: a gated short causal convolution along the sequence, no attention interface) with
``"full_attention"`` layers (``Lfm2Attention`` under ``self_attn``, output ``out_proj``, through
``ALL_ATTENTION_FUNCTIONS``); ``Lfm2DecoderLayer.is_attention_layer`` says which. HeAr covers the attention layers
only (docs/METHOD.md, "Hybrid decoders"), literal path. The final norm is ``embedding_norm`` (applied after the
last layer).

Tiny model: SigLIP2 of patch 8, the image processor without tiling at 16 merged patches (any square input →
64 × 64 → 8 × 8 patches → 4 × 4 = 16 tokens), and a four-layer LFM2 decoder conv / attention / conv / attention.
Template: the hub's LFM2-VL template for one user turn (``<|startoftext|>``, ChatML turns, the image as
``<image>`` right before the text, no default system turn).

LFM3-VL: ``Lfm3VlProcessor`` is Qwen3-VL's (``Qwen2VLImageProcessor``, ``image_grid_thw``, one ``<|image_pad|>``
per 2 × 2 merged patch); ``Lfm3VlVisionModel`` keeps the patches in merge-block order through its layers (gated
3 × 3 depthwise convolutions over each frame's patch grid, ``Lfm3VlVisionShortConv``, and bidirectional
attention) and ``Lfm3VlMultiModalProjector`` merges each block into one token, so the layout is
:func:`hearlib.families.qwen2_vl.qwen_layout`. The decoder is LFM3 (``text_config`` ``lfm3``): ``"conv"`` layers
(``Lfm3ShortConv``) between ``"sliding_attention"`` and ``"full_attention"`` layers (``Lfm3Attention``: query/key
norms, a sigmoid gate per head before ``o_proj``, through ``ALL_ATTENTION_FUNCTIONS``); HeAr covers both kinds of
attention layer. Tiny model: Qwen3-VL's tiny image processor (16 tokens), a tower of two attention layers (the
geometry test makes each tower layer per-token by zeroing its attention output; a convolution layer has none),
and a four-layer decoder conv / sliding (window 8) / conv / full. Template: LFM2-VL's with the image written
``<|image_start|><|image_pad|><|image_end|>`` (the config's vision_start/vision_end ids, 125009/125010, are
LFM2-VL's ``<|image_start|>``/``<|image_end|>``); no LFM3-VL hub template is stored here to pin it to.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.qwen2_vl import qwen_layout, qwen_pixels
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["attention_layer", "lfm2_vl_layout", "LFM2_VL_TEMPLATE", "LFM2_VL_TOKENS"]


def attention_layer(layer) -> bool:
    """An LFM2-style decoder layer with softmax attention (``Lfm2DecoderLayer.is_attention_layer``)."""
    return bool(getattr(layer, "is_attention_layer", False))


def lfm2_vl_layout(config, processor, sample, width, height):
    """One row-major grid: the SigLIP2 patch grid (``spatial_shapes``) unshuffled by ``downsample_factor``."""
    shapes = np.asarray(sample.inputs["spatial_shapes"].cpu()).reshape(-1, 2)
    if len(shapes) != 1:
        raise UnsupportedModel(f"LFM2-VL tiled the image into {len(shapes)} views; run at a size of at most "
                               f"{processor.image_processor.tile_size} px a side")
    factor = int(config.downsample_factor)
    rows, cols = (int(v) // factor for v in shapes[0])
    return single_grid(rows, cols, width, height), {}


LFM2_VL_TOKENS = Tokens(("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>",
                         "<image>", "<|image_start|>", "<|image_end|>", "<|img_thumbnail|>"),
                        dict(bos_token="<|startoftext|>", eos_token="<|im_end|>", unk_token="<unk>",
                             pad_token="<|pad|>"),
                        {"image_token": "<image>", "image_start_token": "<|image_start|>",
                         "image_end_token": "<|image_end|>"})
LFM2_VL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# any square input -> 64 × 64 (16 merged patches, no tiles) -> 8 × 8 patches of 8 -> 4 × 4 tokens
LFM2_VL_PIXELS = dict(encoder_patch_size=8, min_image_tokens=16, max_image_tokens=16, do_image_splitting=False,
                      tile_size=64, image_mean=[0.5] * 3, image_std=[0.5] * 3)
# two attention layers, each after a short-convolution layer
LFM2_TEXT = dict(num_hidden_layers=4, layer_types=["conv", "full_attention", "conv", "full_attention"],
                 conv_L_cache=3, block_auto_adjust_ff_dim=False)

LFM3_VL_TOKENS = Tokens(LFM2_VL_TOKENS.specials + ("<|image_pad|>", "<|video_pad|>"), LFM2_VL_TOKENS.roles,
                        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                         "vision_start_token": "<|image_start|>", "vision_end_token": "<|image_end|>"})
LFM3_VL_IDS = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
               "vision_start_token_id": "<|image_start|>", "vision_end_token_id": "<|image_end|>"}
LFM3_VL_TEMPLATE = LFM2_VL_TEMPLATE.replace("<image>", "<|image_start|><|image_pad|><|image_end|>")
# a short-convolution layer before a sliding-window (window 8, shorter than a prompt) and a full attention layer
LFM3_TEXT = dict(num_hidden_layers=4, layer_types=["conv", "sliding_attention", "conv", "full_attention"],
                 sliding_window=8)

register(
    Family("LFM2-VL", "lfm2_vl", "Lfm2VlForConditionalGeneration", "Lfm2VlProcessor",
           resolution=(512, 512), layout=lfm2_vl_layout,
           tiny=TinySpec(tokens=LFM2_VL_TOKENS, template=LFM2_VL_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids={"image_token_id": "<image>"}, text=LFM2_TEXT,
                         vision={"num_patches": 64}, config={"projector_hidden_size": 64},
                         image_processor=("Lfm2VlImageProcessor", LFM2_VL_PIXELS)),
           note="SigLIP2 NaFlex tower, 2 × 2 pixel unshuffle (one row-major grid of h/32 × w/32 tokens); an LFM2 "
                "hybrid decoder (Lfm2ShortConv in most layers): HeAr covers the attention layers only, literal "
                "path; runs at 512 × 512 (one tile: 16 × 16 tokens)",
           **dict(TRANSFORMERS_DECODER, output_projection="out_proj", final_norm="embedding_norm",
                  softmax_layer=attention_layer)),
    Family("LFM3-VL", "lfm3_vl", "Lfm3VlForConditionalGeneration", "Lfm3VlProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=LFM3_VL_TOKENS, template=LFM3_VL_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids=LFM3_VL_IDS, text=LFM3_TEXT,
                         vision={"layer_types": ["full_attention", "full_attention"], "num_key_value_heads": 2},
                         config={"projector_hidden_size": 64},
                         image_processor=("Qwen2VLImageProcessor", qwen_pixels(mean=[0.5] * 3, std=[0.5] * 3)),
                         video_processor=("Qwen3VLVideoProcessor", qwen_pixels(mean=[0.5] * 3, std=[0.5] * 3))),
           note="Qwen2-VL-style patches and layout (a gated-convolution + attention tower, 2 × 2 merge in the "
                "projector); an LFM3 hybrid decoder (Lfm3ShortConv layers between sliding and full gated "
                "attention): HeAr covers the attention layers only, literal path; runs at 448 × 448 (14 × 14)",
           **dict(TRANSFORMERS_DECODER, final_norm="embedding_norm", softmax_layer=attention_layer)),
)
