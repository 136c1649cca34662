"""The LLaVA lineage: LLaVA-1.5, LLaVA-NeXT, LLaVA-NeXT-Video, Video-LLaVA, ViP-LLaVA, LLaVA-OneVision, FastVLM.

Layouts:

* **LLaVA-1.5** (``llava``; ViP-LLaVA and Video-LLaVA's images too): one grid of
  ``(image_size/patch)²`` tokens (24×24 for the real model); the CLIP class token is dropped by the
  ``"default"`` feature strategy (kept, and listed as non-spatial ``"cls"``, with ``"full"``). The CLIP
  processor resizes the shortest edge and center-crops, so the grid covers the central crop of a
  non-square image.
* **LLaVA-NeXT** (``llava_next``, ``llava_next_video``; anyres): the base grid (the whole image,
  resized) first, then the high-resolution grid of the best-fitting pinpoint's tiles as
  ``pack_image_features`` builds it: tiles joined into one grid, the padding rows/columns removed
  (``unpad_image``) and one ``image_newline`` token after each row (non-spatial ``"newline"``).
* **LLaVA-OneVision** (``llava_onevision``): LLaVA-NeXT's anyres layout over a SigLIP tower (no class
  token, strategy ``"full"``); the ``anyres_max_9`` down-sizing of a large high-res grid is refused.
* **FastVLM** (``fast_vlm``): LLaVA-1.5's layout over FastViTHD (a timm tower through ``TimmWrapperModel``;
  timm must be installed), whose last feature map, one cell per 64 px of the centre crop, is the grid.

Tiny models: CLIP 32 px / patch 8 (4 × 4 = 16 tokens, CLS dropped) and a Llama decoder, the
LLaVA-1.5 template ``USER: <image>\\n{p} ASSISTANT:`` with ``<s>`` prepended; the anyres families use
pinpoints ``[[32, 32], [32, 64], [64, 32]]``, so a square input gives 16 base tokens + 4 rows of 4
tokens and a newline = 36 image tokens. LLaVA-OneVision: SigLIP 32 px, a Qwen2 decoder, ChatML. FastVLM:
timm's ``fastvit_mci3`` narrowed to one block a stage (256 px -> 4 × 4 tokens), a Qwen2 decoder, ChatML.
"""
from __future__ import annotations

import math

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import Box, Panel, pair, regular_grid, size_value
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, LLAVA_TEMPLATE, chatml

__all__ = ["llava_layout", "fast_vlm_layout", "llava_next_layout", "llava_onevision_layout", "LLAVA_TOKENS", "CLIP_MEAN", "CLIP_STD"]


# ---------------------------------------------------------------------------------------
# Where the image tokens lie
# ---------------------------------------------------------------------------------------
def _clip_box(image_processor, width: int, height: int) -> Box:
    """Part of a (width × height) image that a resize + center-crop image processor keeps."""
    new_h, new_w = height, width
    size = getattr(image_processor, "size", None)
    if getattr(image_processor, "do_resize", True) and size is not None:
        if size_value(size, "shortest_edge") and not size_value(size, "longest_edge"):
            short_target = int(size_value(size, "shortest_edge"))
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = short_target, int(short_target * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        elif size_value(size, "height") and size_value(size, "width"):
            new_h, new_w = int(size_value(size, "height")), int(size_value(size, "width"))
        else:
            raise UnsupportedModel(f"image processor size {size} is not a shortest-edge or (height, width) resize")
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop is not None:
        crop_h, crop_w = min(int(size_value(crop, "height")), new_h), min(int(size_value(crop, "width")), new_w)
        top, left = int((new_h - crop_h) / 2.0), int((new_w - crop_w) / 2.0)
    else:
        crop_h, crop_w, top, left = new_h, new_w, 0, 0
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)


def llava_layout(config, processor, sample, width, height):
    vision = config.vision_config
    rows, cols = (s // p for s, p in zip(pair(vision.image_size), pair(vision.patch_size)))
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    n_cls = 0 if strategy == "default" else 1
    panel = Panel("base", regular_grid(n_cls, cols, rows, cols), _clip_box(processor.image_processor, width, height))
    return [panel], ({"cls": (0,)} if n_cls else {})


def fast_vlm_layout(config, processor, sample, width, height):
    """FastViTHD's last feature map, one token per ``patch_size`` (its stride, 64) of the processed image."""
    rows, cols = (int(s) // int(processor.patch_size) for s in sample.inputs["pixel_values"].shape[-2:])
    return [Panel("base", regular_grid(0, cols, rows, cols), _clip_box(processor.image_processor, width, height))], {}


def variance_preserving_tower(model) -> None:
    """The timm tower's convolutions and linear maps drawn variance-preserving (He normal, zero biases):
    transformers' normal(0, 0.02) shrinks the activations of a tower without normalisation (FastViTHD in
    inference mode) layer by layer to nothing, which would cut the image off the decoder."""
    import torch

    for module in model.model.vision_tower.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                module.bias.zero_()


def llava_next_layout(config, processor, sample, width, height):
    if getattr(config, "vision_feature_select_strategy", "default") != "default":
        raise UnsupportedModel("LLaVA-NeXT layout needs vision_feature_select_strategy='default'")
    return anyres_layout(config, sample, width, height)


def llava_onevision_layout(config, processor, sample, width, height):
    """LLaVA-NeXT's anyres layout; SigLIP has no class token, so "full" keeps every patch. The
    anyres_max_9 bilinear down-sizing of the high-res grid is refused (it never happens at one tile)."""
    strategy = getattr(config, "vision_feature_select_strategy", "full")
    if strategy != "full" or "siglip" not in config.vision_config.model_type:
        raise UnsupportedModel("LLaVA-OneVision layout needs a SigLIP tower with vision_feature_select_strategy='full'")
    panels, non_spatial = anyres_layout(config, sample, width, height)
    rows, cols = panels[1].shape
    side = panels[0].shape[0]
    max_tiles = int(str(getattr(processor, "vision_aspect_ratio", "anyres_max_9")).replace("anyres_max_", ""))
    if math.sqrt(rows * cols / (max_tiles * side * side)) > 1.1:
        raise UnsupportedModel(f"LLaVA-OneVision: a {rows} × {cols} high-res grid is down-sized (anyres_max_"
                               f"{max_tiles}); run at a resolution of fewer tiles")
    return panels, non_spatial


def anyres_layout(config, sample, width, height, side: int | None = None):
    """``side``: tokens per tile side when a projector changes it (Granite 4 Vision's downsampling); else
    the tower's patches per side."""
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    vision = config.vision_config
    tile = pair(vision.image_size)[0]
    side = side or tile // pair(vision.patch_size)[0]
    orig_h, orig_w = (int(v) for v in np.asarray(sample.inputs["image_sizes"].cpu())[0])
    pin_h, pin_w = select_best_resolution([orig_h, orig_w], config.image_grid_pinpoints)
    tiles_h, tiles_w = pin_h // tile, pin_w // tile
    cur_h, cur_w = tiles_h * side, tiles_w * side
    # unpad_image, as pack_image_features applies it to the joined tile grid
    r0, r1, c0, c1 = 0, cur_h, 0, cur_w
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(round(orig_h * (cur_w / orig_w), 7))
        pad = (cur_h - new_h) // 2
        r0, r1 = pad, cur_h - pad
    else:
        new_w = int(round(orig_w * (cur_h / orig_h), 7))
        pad = (cur_w - new_w) // 2
        c0, c1 = pad, cur_w - pad
    rows, cols = r1 - r0, c1 - c0
    n_base = side * side
    base = Panel("base", regular_grid(0, side, side, side), (0.0, 0.0, float(width), float(height)))
    high = regular_grid(n_base, cols + 1, rows, cols)
    newlines = tuple(int(v) for v in high[:, -1] + 1)
    # the kept features in pinpoint-canvas pixels -> pixels of the image (resized to fit, centred)
    fit_h, fit_w = get_patch_output_size(np.empty((orig_h, orig_w, 1), np.uint8), (pin_h, pin_w),
                                         ChannelDimension.LAST)
    paste_x, paste_y = (pin_w - fit_w) // 2, (pin_h - fit_h) // 2
    px_w, px_h = pin_w / cur_w, pin_h / cur_h
    sx, sy = width / fit_w, height / fit_h
    box = ((c0 * px_w - paste_x) * sx, (r0 * px_h - paste_y) * sy, (c1 * px_w - paste_x) * sx,
           (r1 * px_h - paste_y) * sy)
    box = (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))
    return [base, Panel("high-res", high, box)], {"newline": newlines}


# ---------------------------------------------------------------------------------------
# Tiny models
# ---------------------------------------------------------------------------------------
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
VICUNA_ROLES = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
LLAVA_TOKENS = Tokens(("<pad>", "<unk>", "<s>", "</s>", "<image>"), VICUNA_ROLES, {"image_token": "<image>"},
                      prepend="<s>")
_VIDEO_TOKENS = Tokens(("<pad>", "<unk>", "<s>", "</s>", "<image>", "<video>"), VICUNA_ROLES,
                       {"image_token": "<image>", "video_token": "<video>"}, prepend="<s>")
_CLIP_32 = dict(do_resize=True, size={"shortest_edge": 32}, resample=3, do_center_crop=True,
                crop_size={"height": 32, "width": 32}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
_VIDEO_32 = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
PINPOINTS = [[32, 32], [32, 64], [64, 32]]
_ANYRES_32 = ("LlavaNextImageProcessor", dict(image_grid_pinpoints=PINPOINTS, **_CLIP_32))
_DEFAULT_FEATURES = dict(vision_feature_select_strategy="default", vision_feature_layer=-1)
_PROCESSOR = dict(patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1)


def _llava_spec(image_tokens: int, tokens: Tokens = LLAVA_TOKENS, token_ids: dict | None = None, **parts) -> TinySpec:
    """LLaVA-1.5's tokens, template and CLIP 32 px tower; ``parts``: the rest of the spec."""
    return TinySpec(tokens=tokens, template=LLAVA_TEMPLATE, image_tokens=image_tokens, processed_size=(32, 32),
                    token_ids=token_ids or {"image_token_id": "<image>"}, vision={"image_size": 32}, **parts)


register(
    Family("LLaVA-1.5", "llava", "LlavaForConditionalGeneration", "LlavaProcessor",
           resolution=None, layout=llava_layout,
           tiny=_llava_spec(16, config=dict(image_seq_length=16, projector_hidden_act="gelu", **_DEFAULT_FEATURES),
                            image_processor=("CLIPImageProcessor", _CLIP_32),
                            processor=dict(image_token="<image>", **_PROCESSOR)),
           note="one CLIP grid (CLS dropped); the processor's shortest-edge resize and centre crop",
           **TRANSFORMERS_DECODER),
    Family("LLaVA-NeXT", "llava_next", "LlavaNextForConditionalGeneration", "LlavaNextProcessor",
           resolution=(336, 336), layout=llava_next_layout,
           tiny=_llava_spec(36, config=dict(image_grid_pinpoints=PINPOINTS, image_seq_length=16,
                                            projector_hidden_act="gelu", **_DEFAULT_FEATURES),
                            image_processor=_ANYRES_32,
                            processor=dict(image_token="<image>", **_PROCESSOR)),
           note="anyres: base grid + unpadded high-res grid with a newline token per row; "
                "the token count depends on the input size, so it runs at 336 × 336",
           **TRANSFORMERS_DECODER),
    Family("LLaVA-OneVision", "llava_onevision", "LlavaOnevisionForConditionalGeneration",
           "LlavaOnevisionProcessor", resolution=(384, 384), layout=llava_onevision_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
                             dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                             {"image_token": "<image>", "video_token": "<video>"}),
               template=chatml(HELPFUL, "<image>\n"), image_tokens=36, processed_size=(32, 32),
               token_ids={"image_token_id": "<image>", "video_token_id": "<video>"},
               text={"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               vision={"image_size": 32, "vision_use_head": False},
               config=dict(image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="full",
                           vision_feature_layer=-1),
               image_processor=("LlavaOnevisionImageProcessor", dict(
                   image_grid_pinpoints=PINPOINTS, size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                   image_std=[0.5] * 3, resample=3)),
               video_processor=("LlavaOnevisionVideoProcessor", dict(
                   size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3)),
               processor=dict(num_image_tokens=16, vision_feature_select_strategy="full")),
           note="anyres-max-9: base grid + unpadded high-res grid with a newline per row; SigLIP has no CLS "
                "token; runs at 384 × 384 (729 + 27 × 28 = 1485 tokens)",
           **TRANSFORMERS_DECODER),
    Family("ViP-LLaVA", "vipllava", "VipLlavaForConditionalGeneration", "LlavaProcessor",
           resolution=None, layout=llava_layout,
           tiny=_llava_spec(16, config=dict(vision_feature_layers=[-2, -1]),
                            image_processor=("CLIPImageProcessor", _CLIP_32),
                            processor=dict(image_token="<image>", **_PROCESSOR)),
           note="LLaVA-1.5 with the CLIP features of several vision layers concatenated (CLS dropped)",
           **TRANSFORMERS_DECODER),
    Family("LLaVA-NeXT-Video", "llava_next_video", "LlavaNextVideoForConditionalGeneration",
           "LlavaNextVideoProcessor", resolution=(336, 336), layout=llava_next_layout,
           tiny=_llava_spec(36, tokens=_VIDEO_TOKENS,
                            token_ids={"image_token_id": "<image>", "video_token_id": "<video>"},
                            config=dict(image_grid_pinpoints=PINPOINTS, image_seq_length=16, video_seq_length=4,
                                        spatial_pool_stride=2, **_DEFAULT_FEATURES),
                            image_processor=_ANYRES_32,
                            video_processor=("LlavaNextVideoVideoProcessor", _VIDEO_32), processor=_PROCESSOR),
           note="LLaVA-NeXT with a video path; images as LLaVA-NeXT (anyres), run at 336 × 336",
           **TRANSFORMERS_DECODER),
    Family("Video-LLaVA", "video_llava", "VideoLlavaForConditionalGeneration", "VideoLlavaProcessor",
           resolution=None, layout=llava_layout,
           tiny=_llava_spec(16, tokens=_VIDEO_TOKENS,
                            token_ids={"image_token_id": "<image>", "video_token_id": "<video>"},
                            config=dict(image_seq_length=16, video_seq_length=64, **_DEFAULT_FEATURES),
                            image_processor=("VideoLlavaImageProcessor", _CLIP_32),
                            video_processor=("VideoLlavaVideoProcessor", _VIDEO_32), processor=_PROCESSOR),
           note="separate image and video CLIP towers (image_tower, video_tower); images as LLaVA-1.5",
           **TRANSFORMERS_DECODER),
    Family("FastVLM", "fast_vlm", "FastVlmForConditionalGeneration", "LlavaProcessor",
           resolution=None, layout=fast_vlm_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>"),
                             dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                             {"image_token": "<image>"}),
               template=chatml(HELPFUL, "<image>\n"), image_tokens=16, processed_size=(256, 256),
               token_ids={"image_token_id": "<image>"},
               text={"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               # FastViTHD itself (timm's fastvit_mci3: five stages, stride 64, attention in the last two)
               # narrowed to one block a stage: 256 px -> a 4 × 4 grid of 64 channels
               vision={"architecture": "fastvit_mci3", "hidden_size": 64, "do_pooling": True, "global_pool": "avg",
                       "model_args": {"inference_mode": True, "layers": [1, 1, 1, 1, 1],
                                      "embed_dims": [8, 8, 16, 32, 32]}},
               config=dict(image_seq_length=16, projector_hidden_act="gelu", vision_feature_select_strategy="full",
                           vision_feature_layer=-1),
               image_processor=("CLIPImageProcessor", dict(
                   _CLIP_32, size={"shortest_edge": 256}, crop_size={"height": 256, "width": 256})),
               processor=dict(image_token="<image>", patch_size=64, vision_feature_select_strategy="full",
                              num_additional_image_tokens=0), weights=variance_preserving_tower),
           note="FastViTHD (a timm tower, stride 64): one grid of (crop/64)² tokens, 16 × 16 at 1024 px, over the "
                "processor's shortest-edge resize and centre crop; Qwen2 decoder",
           **TRANSFORMERS_DECODER),
)
