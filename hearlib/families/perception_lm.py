"""PerceptionLM (``perception_lm``).

Layout: the processor's "thumb+tile" input, one thumbnail of the whole image then the tiles of the canvas its
image processor chooses (the largest arrangement of at most ``max_num_tiles`` tiles the image fits: 6 × 6 for a
square image under the image processor's default 36), row-major; each tile is the Perception Encoder's (a timm ViT, through
``TimmWrapperModel``; timm must be installed) patch grid without its class token, projected and
average-pooled by ``projector_pooling_ratio`` (448 px / patch 14 / 2 = 16 × 16 tokens a tile). hearlib runs it
at 448 × 448: the thumbnail and 36 tiles (``max_num_tiles`` 36), 37 × 256 image tokens.

Tiny model: timm's ``vit_pe_core_tiny_patch16_384`` narrowed to width 32, two blocks, 64 px / patch 8, pooled by
2 to 4 × 4 = 16 tokens a tile; at most 4 tiles, so a square image gives the thumbnail and a 2 × 2 canvas, 80
tokens. Llama decoder; template as the hub's (a system turn, then
``<|start_header_id|>user<|end_header_id|>\\n\\n<|image|>{p}<|eot_id|>``, the assistant header).
"""
from __future__ import annotations

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import Panel, regular_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["perception_lm_layout", "PERCEPTION_LM_TEMPLATE"]


def perception_lm_layout(config, processor, sample, width, height):
    import torch

    image_processor = processor.image_processor
    side = int(image_processor.tile_size) // int(processor.patch_size) // int(config.projector_pooling_ratio)
    per_tile = side * side
    n_tiles = int(sample.inputs["pixel_values"].shape[1])          # [images, tiles, 3, tile, tile]
    full = (0.0, 0.0, float(width), float(height))
    if image_processor.vision_input_type != "thumb+tile":           # "vanilla": the whole image as one tile
        return [Panel("base", regular_grid(0, side, side, side), full)], {}
    # the canvas the image processor's own resize chooses for an image of this size
    _, (grid_w, grid_h) = image_processor.resize(torch.zeros(1, 1, int(height), int(width)),
                                                 int(image_processor.tile_size), int(image_processor.max_num_tiles))
    if grid_w * grid_h + 1 != n_tiles:
        raise UnsupportedModel(f"PerceptionLM: {n_tiles} tiles in pixel_values, but the thumbnail and a "
                               f"{grid_h}×{grid_w} canvas for a {width}×{height} image")
    panels = [Panel("thumbnail", regular_grid(0, side, side, side), full)]
    for i in range(grid_w * grid_h):
        r, c = divmod(i, grid_w)
        box = (c * width / grid_w, r * height / grid_h, (c + 1) * width / grid_w, (r + 1) * height / grid_h)
        panels.append(Panel(f"tile {r},{c}", regular_grid((i + 1) * per_tile, side, side, side), box))
    return panels, {}


SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that "
          "the user provides, and assist the user with a variety of tasks using natural language.")
# as the hub's (transformers' PerceptionLM processor tests): a default system turn, images before the text
PERCEPTION_LM_TEMPLATE = (
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '" + SYSTEM + "' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<|image|>' }}{%- endfor %}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<|video|>' }}{%- endfor %}"
    "{%- for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{- content['text'] | trim }}"
    "{%- endfor %}{{'<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
_TOKENS = Tokens(("<|finetune_right_pad_id|>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|image|>", "<|video|>"),
                 dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", unk_token="<unk>",
                      pad_token="<|finetune_right_pad_id|>"),
                 {"image_token": "<|image|>", "video_token": "<|video|>"},
                 extra_words=("You", "to", "language", "vision", "able", "understand", "visual", "content", "provides",
                              "and", "variety", "of", "tasks", "natural"))
_PIXELS = dict(do_resize=True, resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
               image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 64, "width": 64})

register(
    Family("PerceptionLM", "perception_lm", "PerceptionLMForConditionalGeneration", "PerceptionLMProcessor",
           resolution=(448, 448), layout=perception_lm_layout,
           tiny=TinySpec(
               tokens=_TOKENS, template=PERCEPTION_LM_TEMPLATE, image_tokens=80, processed_size=(64, 64),
               token_ids={"image_token_id": "<|image|>", "video_token_id": "<|video|>"},
               vision={"architecture": "vit_pe_core_tiny_patch16_384",
                       "model_args": {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64, "patch_size": 8,
                                      "ref_feat_shape": [8, 8], "global_pool": ""}},
               config={"projector_pooling_ratio": 2, "vision_use_cls_token": True},
               image_processor=("PerceptionLMImageProcessor", dict(
                   vision_input_type="thumb+tile", tile_size=64, max_num_tiles=4, **_PIXELS)),
               video_processor=("PerceptionLMVideoProcessor", dict(size={"height": 64, "width": 64})),
               processor={"patch_size": 8, "pooling_ratio": 2}),
           note="Perception Encoder (a timm ViT) on a thumbnail and the tiles of a canvas of up to 36 × 448 px, "
                "each pooled to 16 × 16 tokens; at the fixed 448 × 448 the thumbnail and 6 × 6 tiles, 9472 image "
                "tokens; Llama decoder",
           **TRANSFORMERS_DECODER),
)
