"""Mllama (``mllama``: Llama 3.2 Vision), a decoder that reads the image by cross-attention.

Decoder: ``MllamaTextModel`` interleaves ``MllamaSelfAttentionDecoderLayer`` (causal self-attention over
the text; the one ``<|image|>`` token is an ordinary text token) with ``MllamaCrossAttentionDecoderLayer``
at ``text_config.cross_attention_layers`` (eight of 40 in the 11B). Their ``MllamaTextCrossAttention``
(under ``cross_attn``) reads keys/values projected from ``cross_attention_states``, the vision tower's
output for every tile, through ``ALL_ATTENTION_FUNCTIONS`` with ``layer_idx`` and the additive mask that
``_prepare_cross_attention_mask`` builds from the processor's ``cross_attention_mask``; the output goes
through ``o_proj`` and a tanh gate into the residual stream. HeAr covers the cross-attention layers only
(:attr:`Family.cross_attention`; docs/METHOD.md, "Cross-attention models"): N = cross layers × heads,
the image tokens are the cross-attention keys, the self-attention layers run as the model runs them.

Layout: per tile (``max_num_tiles`` tiles are always present, those past the image's ``num_tiles``
padded), ``(image_size/patch_size)² + 1`` keys: the class token first, then the patch grid row-major.
Tiles lie on the canvas row-major by the sample's aspect ratio (``aspect_ratio_ids`` into
``get_all_supported_aspect_ratios(max_image_tiles)``, (tiles high, tiles wide)); the class tokens and the
padded tiles are non-spatial. The tile boxes take the image to fill its canvas (the image processor pads it
to the canvas otherwise); at hearlib's fixed 560 × 560 a square image is one tile of 40 × 40 patches.

Tiny model: a tower of 64 px / patch 8 (8 × 8 patches + class token = 65 keys), one tile
(``max_num_tiles`` 1), one global layer and one intermediate layer; a decoder of four layers, self /
cross / self / cross (``cross_attention_layers`` [1, 3]) whose tanh gates are set to 1 (0 at initialisation
would hide the image). Template: Llama 3.2 Vision Instruct's for one
user turn with an image (no system turn):
``<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n<|image|>{p}<|eot_id|>``
``<|start_header_id|>assistant<|end_header_id|>\\n\\n``.
"""
from __future__ import annotations

import numpy as np

from hearlib.families.geometry import Panel, pair, regular_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["cross_attention_layer", "mllama_keys", "mllama_layout", "open_gates", "MLLAMA_TEMPLATE", "MLLAMA_TOKENS"]


def cross_attention_layer(layer) -> bool:
    """An ``MllamaCrossAttentionDecoderLayer`` (it has ``cross_attn``; a self-attention layer has ``self_attn``)."""
    return hasattr(layer, "cross_attn")


def _keys_per_tile(config) -> int:
    vision = config.vision_config
    return (pair(vision.image_size)[0] // pair(vision.patch_size)[0]) ** 2 + 1


def mllama_keys(config, inputs) -> int:
    """Keys a cross-attention layer reads: images × tiles (padded ones included) × keys per tile."""
    images, tiles = inputs["pixel_values"].shape[1:3]
    return int(images) * int(tiles) * _keys_per_tile(config)


def open_gates(model) -> None:
    """Set the cross-attention layers' tanh gates (``cross_attn_attn_gate``, ``cross_attn_mlp_gate``; zero at
    initialisation, which hides the image from the decoder) to 1, as trained checkpoints have them open."""
    for name, parameter in model.named_parameters():
        if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
            parameter.data.fill_(1.0)


def mllama_layout(config, processor, sample, width, height):
    from transformers.models.mllama.image_processing_mllama import get_all_supported_aspect_ratios

    per_tile = _keys_per_tile(config)
    side = int(round((per_tile - 1) ** 0.5))
    inputs = sample.inputs
    n_tiles = int(inputs["pixel_values"].shape[2])
    aspect = int(np.asarray(inputs["aspect_ratio_ids"].cpu()).reshape(-1)[0])
    supported = get_all_supported_aspect_ratios(processor.image_processor.max_image_tiles)
    rows, cols = supported[aspect - 1]
    panels, classes = [], []
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        box = (c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
        panels.append(Panel(f"tile {r},{c}", regular_grid(i * per_tile + 1, side, side, side), box))
        classes.append(i * per_tile)
    non_spatial = {"cls": tuple(classes)}
    padded = tuple(range(rows * cols * per_tile, n_tiles * per_tile))
    if padded:
        non_spatial["padded tiles"] = padded
    return panels, non_spatial


MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|image|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MLLAMA_TOKENS = Tokens(("<|finetune_right_pad_id|>", "<unk>", "<|begin_of_text|>", "<|eot_id|>",
                        "<|start_header_id|>", "<|end_header_id|>", "<|image|>", "<|python_tag|>"),
                       dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", unk_token="<unk>",
                            pad_token="<|finetune_right_pad_id|>"),
                       {"image_token": "<|image|>"})
_PIXELS = dict(do_resize=True, size={"height": 64, "width": 64}, max_image_tiles=1, image_mean=[0.5] * 3,
               image_std=[0.5] * 3)

register(
    Family("Llama 3.2 Vision", "mllama", "MllamaForConditionalGeneration", "MllamaProcessor",
           resolution=(560, 560), layout=mllama_layout,
           tiny=TinySpec(tokens=MLLAMA_TOKENS, template=MLLAMA_TEMPLATE, image_tokens=65, processed_size=(64, 64),
                         token_ids={"image_token_index": "<|image|>"},
                         text=dict(num_hidden_layers=4, cross_attention_layers=[1, 3]),
                         vision=dict(num_global_layers=1, intermediate_layers_indices=[0], vision_output_dim=64,
                                     max_num_tiles=1, supported_aspect_ratios=[[1, 1]]),
                         image_processor=("MllamaImageProcessor", _PIXELS), weights=open_gates),
           note="the image reaches the text only through MllamaTextCrossAttention layers "
                "(text_config.cross_attention_layers): HeAr's heads are their heads and the image tokens their "
                "keys (every tile's class token and patches, padded tiles included); the self-attention layers "
                "are not ablated; literal path; runs at 560 × 560 (one tile of 40 × 40 + 1)",
           cross_attention_keys=mllama_keys, softmax_layer=cross_attention_layer,
           **dict(TRANSFORMERS_DECODER, attention="cross_attn", image_token_id="image_token_index")),
)
