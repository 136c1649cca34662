"""The Cohere 2 vision lineage: Aya Vision and Command A Vision.

Layout: SigLIP tiles pixel-shuffled 2 × 2, read row-major with the global tile (thumbnail) last
when tiled (:func:`hearlib.families.geometry.tiles_and_thumbnail`). Aya Vision writes
``<|START_OF_IMG|>`` TILE_n / TILE_GLOBAL + tokens + ``<|END_OF_IMG|>``; Command A Vision
``<|START_OF_IMG|>`` + tokens + ``<|IMG_LINE_BREAK|>`` per tile + ``<|END_OF_IMG|>``: none of those
markers is an image token.

Tiny models: SigLIP 64 px / patch 8 (8 × 8 patches) pixel-shuffled 2 × 2 to 4 × 4 = 16 tokens per
tile, one tile at the tiny size; a Cohere 2 decoder whose layer 0 has a sliding window (12) shorter
than the sequence; Cohere's turn tokens, ``<BOS_TOKEN>`` prepended.
"""
from __future__ import annotations

from hearlib.families.gemma3 import SLIDING_THEN_FULL
from hearlib.families.geometry import pair, tiles_and_thumbnail
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import cohere_turns

__all__ = ["aya_vision_layout", "cohere2_vision_layout", "aya_vision_logit_scale", "COHERE_ROLES"]


def aya_vision_layout(config, processor, sample, width, height):
    """Aya Vision: SigLIP tiles pixel-shuffled by ``downsample_factor``; tiles row-major, the global
    tile last."""
    vision = config.vision_config
    side = pair(vision.image_size)[0] // pair(vision.patch_size)[0] // int(config.downsample_factor)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return tiles_and_thumbnail(processor.image_processor, n_tiles, side, side, width, height, "Aya Vision"), {}


def aya_vision_logit_scale(model) -> float | None:
    """From transformers 5.25 on, ``AyaVisionForConditionalGeneration`` multiplies its logits by the Cohere 2
    text config's ``logit_scale`` (``models/aya_vision/modeling_aya_vision.py``: ``logits = logits *
    self.config.text_config.logit_scale``); the releases before it never apply it."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__).release >= (5, 25):
        return float(model.config.text_config.logit_scale)
    return None


def cohere2_vision_layout(config, processor, sample, width, height):
    """Command A Vision: as Aya Vision (thumbnail last when tiled)."""
    side = int(processor.image_processor.patch_size)
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return tiles_and_thumbnail(processor.image_processor, n_tiles, side, side, width, height,
                               "Command A Vision"), {}


COHERE_ROLES = dict(bos_token="<BOS_TOKEN>", eos_token="<|END_OF_TURN_TOKEN|>", unk_token="<unk>", pad_token="<PAD>")
_TOKENS = Tokens(("<PAD>", "<unk>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                  "<|CHATBOT_TOKEN|>", "<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>",
                  "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL"), COHERE_ROLES,
                 {"image_token": "<|IMG_PATCH|>", "boi_token": "<|START_OF_IMG|>", "eoi_token": "<|END_OF_IMG|>",
                  "img_line_break_token": "<|IMG_LINE_BREAK|>"}, prepend="<BOS_TOKEN>")
_TEXT = dict(rms_norm_eps=DROP, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **SLIDING_THEN_FULL)
_ONE_TILE = dict(size={"height": 64, "width": 64}, crop_to_patches=False, min_patches=1, max_patches=1, resample=3,
                 image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _cohere_spec(image: str, token_ids: dict, config: dict, image_processor: tuple, **processor) -> TinySpec:
    return TinySpec(tokens=_TOKENS, template=cohere_turns(image), image_tokens=16, processed_size=(64, 64),
                    token_ids=token_ids, text=_TEXT, vision={"vision_use_head": False},
                    config=dict(downsample_factor=2, alignment_intermediate_size=64, **config),
                    image_processor=image_processor, processor=processor)


register(
    Family("Aya Vision", "aya_vision", "AyaVisionForConditionalGeneration", "AyaVisionProcessor",
           resolution=(364, 364), layout=aya_vision_layout,
           tiny=_cohere_spec("<image>", {"image_token_index": "<|IMG_PATCH|>"},
                             dict(vision_feature_select_strategy="full", vision_feature_layer=-1),
                             ("GotOcr2ImageProcessor", _ONE_TILE), patch_size=8, img_size=64, downsample_factor=2),
           note="SigLIP 364 px tiles pixel-shuffled 2 × 2 (169 tokens a tile), a Cohere 2 decoder with sliding-"
                "window layers; at 364 × 364 one tile; tile and start/end markers are not image tokens; from "
                "transformers 5.25 its wrapper scales the logits by logit_scale, which the engine then applies too",
           logit_scale=aya_vision_logit_scale, **TRANSFORMERS_DECODER),
    Family("Command A Vision", "cohere2_vision", "Cohere2VisionForConditionalGeneration", "Cohere2VisionProcessor",
           resolution=(512, 512), layout=cohere2_vision_layout,
           tiny=_cohere_spec("<|IMG_PATCH|>", {"image_token_id": "<|IMG_PATCH|>"}, {},
                             ("Cohere2VisionImageProcessor", dict(patch_size=4, **_ONE_TILE))),
           note="SigLIP 512 px tiles pixel-shuffled 2 × 2 (256 tokens a tile) + a line-break token per tile, "
                "a Cohere 2 decoder; at 512 × 512 one tile",
           **TRANSFORMERS_DECODER),
)
