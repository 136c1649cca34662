"""Granite 4 Vision (``granite4_vision``).

Layout: LLaVA-NeXT's anyres layout (:func:`hearlib.families.llava.anyres_layout`: the base tile, then the
unpadded high-res grid of the best pinpoint's tiles with the learned ``image_newline`` after each row,
non-spatial) on a token grid that Granite4VisionWindowQFormerDownsampler shrinks by ``downsample_rate``
``q/w`` (4/8: 24 × 24 patches → 12 × 12 tokens a tile): each window of ``w × w`` patches gives ``q × q``
Q-Former queries, each seeded by its own 2 × 2 patch block and cross-attending to the whole window. The
decoder reads the image at the ``<image>`` positions, but not as input embeddings: Granite4VisionModel.forward
zeroes them and adds each projector's features there before the decoder layers of ``deepstack_layer_map``
and ``spatial_target_layers`` (the token features of the layout's geometry test are those additions). A
Granite decoder; the wrapper divides the logits by ``text_config.logits_scaling``.

Tiny model: a SigLIP tower 64 px / patch 8, width 64 (the Q-Former's heads are ``hidden_size // 64``), a
one-layer Q-Former, ``downsample_rate`` 1/2 (8 × 8 patches → 4 × 4 tokens a tile; one query per 2 × 2
window, so each token reads exactly its cell), the layerwise projector of vision layer 1 into decoder layer 0
and the four spatial ones into layer 1 (``spatial_target_layers`` [1, 1, 1, 1]: with two decoder layers the
groups share one, and transformers' forward keeps the last); pinpoints ``[[64, 64], [64, 128], [128, 64]]``,
so a square input gives 16 base tokens + 4 rows of 4 tokens and a newline = 36; the Granite decoder with
``embedding_multiplier`` 1 and ``logits_scaling`` 0.5 (see :mod:`hearlib.families.granite_docling`). Template:
Granite's roles, ``<|start_of_role|>user<|end_of_role|><image>{p}<|end_of_text|>\\n``
``<|start_of_role|>assistant<|end_of_role|>``, a stand-in not checked against the checkpoint's hub files
(none offline).
"""
from __future__ import annotations

from fractions import Fraction

from hearlib.families.geometry import pair
from hearlib.families.granite_docling import GRANITE_TEMPLATE, granite_logit_scale
from hearlib.families.llava import anyres_layout
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["granite4_vision_layout"]


def granite4_vision_layout(config, processor, sample, width, height):
    """LLaVA-NeXT's base + unpadded high-res grids, on the Window Q-Former's downsampled token grid."""
    vision = config.vision_config
    side = int(pair(vision.image_size)[0] // pair(vision.patch_size)[0] * Fraction(config.downsample_rate))
    return anyres_layout(config, sample, width, height, side=side)


PINPOINTS = [[64, 64], [64, 128], [128, 64]]
_PIXELS = dict(size={"height": 64, "width": 64}, do_center_crop=False, image_mean=[0.5] * 3, image_std=[0.5] * 3,
               resample=3)
_QFORMER = dict(num_hidden_layers=1, intermediate_size=128, cross_attention_frequency=1,
                max_position_embeddings=64, use_qformer_text_input=False)

register(
    Family("Granite 4 Vision", "granite4_vision", "Granite4VisionForConditionalGeneration", "Granite4VisionProcessor",
           resolution=(384, 384), layout=granite4_vision_layout, logit_scale=granite_logit_scale,
           tiny=TinySpec(
               tokens=Tokens(("<|pad|>", "<unk>", "<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>",
                              "<image>"),
                             dict(eos_token="<|end_of_text|>", unk_token="<unk>", pad_token="<|pad|>"),
                             {"image_token": "<image>"}),
               template=GRANITE_TEMPLATE, image_tokens=36, processed_size=(64, 64),
               token_ids={"image_token_index": "<image>"},
               text=dict(embedding_multiplier=1.0, logits_scaling=0.5),
               vision=dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128,
                           vision_use_head=False),
               config=dict(image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="full",
                           vision_feature_layer=-1, downsample_rate="1/2", deepstack_layer_map=[[1, 0]],
                           spatial_vision_layer=-1, spatial_target_layers=[1, 1, 1, 1], projector_dropout=0.0,
                           qformer_config=_QFORMER),
               image_processor=("LlavaNextImageProcessor", dict(image_grid_pinpoints=PINPOINTS, **_PIXELS)),
               processor=dict(patch_size=8, vision_feature_select_strategy="full", downsample_rate="1/2")),
           note="LLaVA-NeXT anyres (base tile + unpadded high-res grid, a newline per row) on a grid a Window "
                "Q-Former downsamples by 4/8 (each token reads its 8 × 8-patch window); the image positions' "
                "embeddings are zeroed and the projectors' features added there before chosen decoder layers "
                "(deepstack_layer_map, spatial_target_layers); Granite decoder, logits ÷ logits_scaling; runs at "
                "384 × 384 (144 base + 12 × 13 = 300 tokens)",
           **TRANSFORMERS_DECODER),
)
