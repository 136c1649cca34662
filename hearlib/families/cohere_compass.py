"""Cohere Compass (``cohere_compass``).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (a Qwen3-VL-style tower with DeepStack).

Tiny model: the Qwen3-VL-style tower (patch 8, 2 × 2 merge, DeepStack from block 0), a Cohere decoder
with M-RoPE per layer type, layer 0 sliding (window 12 < the sequence), and a wrapper that scales the
logits by ``text_config.logit_scale`` (0.5 here, so the engine must apply it too); Cohere's turns
with ``<|VISION_START|><|IMAGE_PAD|><|VISION_END|>`` where the image goes.
"""
from __future__ import annotations

from hearlib.families.aya_vision import COHERE_ROLES
from hearlib.families.gemma3 import SLIDING_THEN_FULL
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.qwen2_vl import MROPE, qwen_layout
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register
from hearlib.families.templates import cohere_turns

_PIXELS = dict(size={"shortest_edge": 60 * 60, "longest_edge": 6000}, patch_size=8, temporal_patch_size=2,
               merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)

register(
    Family("Cohere Compass", "cohere_compass", "CohereCompassForConditionalGeneration", "CohereCompassProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(
               tokens=Tokens(("<PAD>", "<unk>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>",
                              "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|VISION_START|>", "<|VISION_END|>",
                              "<|IMAGE_PAD|>", "<|VIDEO_PAD|>"), COHERE_ROLES,
                             {"image_token": "<|IMAGE_PAD|>", "video_token": "<|VIDEO_PAD|>"}, prepend="<BOS_TOKEN>"),
               template=cohere_turns("<|VISION_START|><|IMAGE_PAD|><|VISION_END|>"), image_tokens=16,
               processed_size=(64, 64),
               token_ids={"image_token_id": "<|IMAGE_PAD|>", "video_token_id": "<|VIDEO_PAD|>",
                          "vision_start_token_id": "<|VISION_START|>", "vision_end_token_id": "<|VISION_END|>"},
               text=dict(rms_norm_eps=DROP, head_dim=DROP, logit_scale=0.5,
                         rope_parameters={"sliding_attention": dict(MROPE), "full_attention": dict(MROPE)},
                         **SLIDING_THEN_FULL),
               image_processor=("CohereCompassImageProcessor", _PIXELS),
               video_processor=("CohereCompassVideoProcessor", _PIXELS)),
           note="Qwen3-VL-style tower (DeepStack) and layout with a Cohere decoder (sliding-window layers, M-RoPE); "
                "the wrapper scales the logits by logit_scale, which the engine applies where it unembeds; "
                "runs at 448 × 448",
           **TRANSFORMERS_DECODER),
)
