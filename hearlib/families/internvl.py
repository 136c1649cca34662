"""The InternVL lineage: InternVL2.5 / 3 / 3.5 and Qianfan-OCR (InternVL's layout, a Qwen3 decoder).

Layout: ``((image_size/patch)·downsample_ratio)²`` tokens per tile; one tile (the whole image,
resized) unless the processor crops to patches, then the tiles row-major and a thumbnail of the
whole image last. ``<img>``/``</img>`` are not image tokens.

Tiny models: an InternViT-style tower 64 px / patch 8 (8 × 8 patches, CLS dropped), pixel shuffle
0.5 → 16 ``<IMG_CONTEXT>`` tokens between ``<img>`` and ``</img>``; the GotOcr2 image processor at
64 × 64, one tile. InternVL: a Qwen2 decoder (InternVL2.5 / InternVL3; :func:`hearlib.families.tiny.
tiny_internvl_qwen3` swaps in InternVL3.5's Qwen3), template ``<|im_start|>system\\nYou are InternVL, a
helpful assistant.<|im_end|>\\n<|im_start|>user\\n<IMG_CONTEXT>\\n{p}<|im_end|>\\n<|im_start|>assistant\\n``.
Qianfan-OCR: a Qwen3 decoder, the template's ``<image>`` placeholder expanded by the processor.
"""
from __future__ import annotations

from hearlib.families.geometry import pair, tiles_and_thumbnail
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, chatml

__all__ = ["internvl_layout"]


def internvl_layout(config, processor, sample, width, height):
    vision = config.vision_config
    side_h, side_w = (s // p for s, p in zip(pair(vision.image_size), pair(vision.patch_size)))
    rows, cols = int(side_h * config.downsample_ratio), int(side_w * config.downsample_ratio)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return tiles_and_thumbnail(processor.image_processor, n_tiles, rows, cols, width, height, "InternVL"), {}


IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
CHATML_ROLES = dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>")
_VISION = dict(image_size=[64, 64], patch_size=[8, 8], use_mean_pooling=False, norm_type="layer_norm")
_ONE_TILE = dict(size={"height": 64, "width": 64}, crop_to_patches=False, min_patches=1, max_patches=1)
_ROPE = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
_FEATURES = dict(image_seq_length=16, downsample_ratio=0.5, vision_feature_layer=-1,
                 vision_feature_select_strategy="default")

register(
    Family("InternVL2.5", "internvl", "InternVLForConditionalGeneration", "InternVLProcessor",
           resolution=(448, 448), layout=internvl_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                              "<IMG_CONTEXT>", "<video>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"),
                             CHATML_ROLES, {"start_image_token": "<img>", "end_image_token": "</img>",
                                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}),
               template=chatml("You are InternVL, a helpful assistant.", "<IMG_CONTEXT>\n"),
               image_tokens=16, processed_size=(64, 64), token_ids={"image_token_id": "<IMG_CONTEXT>"},
               text=_ROPE, vision=_VISION, config=dict(projector_hidden_act="gelu", **_FEATURES),
               image_processor=("GotOcr2ImageProcessor", dict(
                   do_resize=True, resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                   do_convert_rgb=True, **_ONE_TILE, **IMAGENET)),
               video_processor=("InternVLVideoProcessor", dict(size={"height": 64, "width": 64}, **IMAGENET)),
               processor=dict(image_seq_length=16)),
           note="448 px tiles, pixel shuffle 0.5 (256 tokens a tile); at 448 × 448 one tile, no thumbnail; "
                "<img>/</img> around the image tokens are not image tokens",
           **TRANSFORMERS_DECODER),
    Family("Qianfan-OCR", "qianfan_ocr", "QianfanOCRForConditionalGeneration", "QianfanOCRProcessor",
           resolution=(448, 448), layout=internvl_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                              "<IMG_CONTEXT>", "<image>"),
                             CHATML_ROLES, {"start_image_token": "<img>", "end_image_token": "</img>",
                                            "context_image_token": "<IMG_CONTEXT>"}),
               template=chatml(HELPFUL, "<image>\n"), image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_id": "<IMG_CONTEXT>"}, text=_ROPE, vision=_VISION, config=_FEATURES,
               image_processor=("GotOcr2ImageProcessor", dict(resample=3, **_ONE_TILE, **IMAGENET)),
               processor=dict(image_seq_length=16)),
           note="InternVL's layout (448 px tiles, pixel shuffle 0.5: 256 tokens a tile) with a Qwen3 decoder; "
                "at 448 × 448 one tile; <img>/</img> are not image tokens",
           **TRANSFORMERS_DECODER),
)
