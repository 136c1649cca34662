"""Ovis2 (``ovis2``).

Layout: ``(image_size/patch/hidden_stride)²`` ``<IMG_ATOM>`` tokens for the whole image; crops
(``crop_to_patches``) are refused. The indicator tokens (``<IMG_START>``, ``<IMG_GRID>``, ``<IMG_END>``)
carry fixed embeddings and are not image tokens.

Tiny model: a SigLIP-like tower 64 px / patch 8, hidden stride 2 (8 × 8 patches → 4 × 4), whose
"visual tokenizer" gives each of the 16 tokens a softmax over a 64-entry visual embedding table; the
processor expands ``<image>`` to ``<IMG_START>`` + 16 × ``<IMG_ATOM>`` + ``<IMG_GRID>`` + ``<IMG_END>``
(one view); a Qwen2 decoder; ChatML.
"""
from __future__ import annotations

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import pair, whole_image_grid
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import HELPFUL, chatml

__all__ = ["ovis2_layout"]


def ovis2_layout(config, processor, sample, width, height):
    if int(sample.inputs["pixel_values"].shape[0]) != 1:
        raise UnsupportedModel("Ovis2: crops are not supported; turn crop_to_patches off")
    vision = config.vision_config
    side = pair(vision.image_size)[0] // pair(vision.patch_size)[0] // int(vision.hidden_stride)
    return whole_image_grid(processor.image_processor, side, side, width, height, "Ovis2"), {}


_INDICATORS = ["<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"]

register(
    Family("Ovis2", "ovis2", "Ovis2ForConditionalGeneration", "Ovis2Processor",
           resolution=(448, 448), layout=ovis2_layout,
           tiny=TinySpec(
               tokens=Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<IMG_ATOM>",
                              *_INDICATORS), dict(eos_token="<|im_end|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                             {"image_token": "<IMG_ATOM>"}),
               template=chatml(HELPFUL, "<image>\n"), image_tokens=16, processed_size=(64, 64),
               token_ids={"image_token_id": "<IMG_ATOM>", "visual_indicator_token_ids": _INDICATORS},
               text={"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
               vision=dict(vocab_size=64, hidden_stride=2, num_visual_indicator_tokens=5),
               image_processor=("Ovis2ImageProcessor", dict(size={"height": 64, "width": 64}, crop_to_patches=False,
                                                            image_mean=CLIP_MEAN, image_std=CLIP_STD)),
               processor={"image_seq_length": 16}),
           note="each image token is a softmax-weighted mix of a visual embedding table (the visual tokenizer); "
                "one view at 448 × 448 (crops off); <IMG_START>/<IMG_GRID>/<IMG_END> are not image tokens",
           **TRANSFORMERS_DECODER),
)
