"""Muse Glimmer (``muse_glimmer``) and Muse Spark (``muse_spark``).

Layout: MuseGlimmerImageProcessor resizes the image, keeping its aspect ratio, to a grid of
(patch_size · merge_size)-pixel cells under ``max_image_tokens`` and patchifies it row-major; the vision
tower folds each ``merge_size × merge_size`` block of patches into one row (``pixel_shuffle`` after
``get_vision_pixel_shuffle_index``), and the processor writes one ``<|patch|>`` per merged block between
``<|image_start|>`` and ``<|image_end|>`` (``image_grid_thw.prod() // merge_size²``). So the image tokens are
one row-major ``(h / merge) × (w / merge)`` grid over the whole image, as Qwen2-VL's, but the merge is
``vision_config.merge_size`` (there is no ``spatial_merge_size``). The decoder is softmax attention with a
per-head sigmoid output gate before ``o_proj``, sliding layers, and NoPE on every fourth layer counted back
from the last (``layer_rope_theta`` 0); the wrapper returns ``softcap(logits × output_multiplier)``. Muse
Spark has the same image block and decoder attention, a MuseSparkResidualGate around each sub-layer, a
mixture-of-experts MLP and an audio tower (no audio in the paper's prompt).

Tiny models: the vision tower at patch 4, merge 2, ``max_image_tokens`` 16 (any square input of 32 px or
more → 32 × 32 → 4 × 4 merged tokens), two decoder layers (sliding with RoPE, then full with NoPE), a
sliding window shorter than the prompt; Muse Spark with one dense and one 4-expert layer and a tiny
audio tower. Template: a stand-in, not checked against hub files (none are here): the Muse chat format
(node-llama-cpp's MuseChatWrapper, written from the hub's chat_template.jinja): BOS, the default system
turn without its current-date line, ``<|start|>user<|message|>…<|eot|>`` with the image as ``<|patch|>``
(MuseGlimmerProcessor.image_token, which replace_image_token expands), then ``<|start|>assistant``.
"""
from __future__ import annotations

import numpy as np

from hearlib.errors import UnsupportedModel
from hearlib.families.geometry import single_grid
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["muse_layout", "MUSE_TEMPLATE", "MUSE_TOKENS"]


def muse_layout(config, processor, sample, width, height):
    """One row-major grid of merged patches over the whole (aspect-preserving resized) image."""
    t, h, w = (int(v) for v in np.asarray(sample.inputs["image_grid_thw"].cpu())[0])
    if t != 1:
        raise UnsupportedModel(f"image_grid_thw has {t} temporal patches; one image expected")
    merge = int(config.vision_config.merge_size)
    return single_grid(h // merge, w // merge, width, height), {}


def muse_logit_scale(model) -> float:
    """``output_multiplier``: the wrapper scales the logits by it before the final soft-cap."""
    return float(model.config.text_config.output_multiplier)


MUSE_SYSTEM = ("You are a helpful AI assistant.\nKnowledge cutoff: 04-01-2026.\nReasoning strength: high.\n\n"
               '# Valid recipients: "self", "user".')
MUSE_TEMPLATE = (
    "{{ bos_token }}<|start|>system<|message|>"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}" + MUSE_SYSTEM
    + "{% endif %}<|eot|>"
    "{% for message in messages %}{% if message['role'] != 'system' %}<|start|>{{ message['role'] }}<|message|>"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% elif item['type'] == 'image' %}<|patch|>{% endif %}{% endfor %}{% endif %}<|eot|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
MUSE_TOKENS = Tokens(("<|begin_of_text|>", "<|end_of_text|>", "<unk>", "<|start|>", "<|message|>", "<|eot|>",
                      "<|image_start|>", "<|image_end|>", "<|patch|>", "<|video|>", "<|vid_start|>", "<|vid_end|>",
                      "<|vid_frame_separator|>", "<|audio|>", "<|soft_audio_start|>", "<|soft_audio_end|>"),
                     dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", unk_token="<unk>",
                          pad_token="<|end_of_text|>"),
                     {"image_token": "<|patch|>"})
MUSE_IDS = {"image_token_id": "<|patch|>", "video_token_id": "<|video|>"}
MUSE_PIXELS = dict(patch_size=4, temporal_patch_size=2, merge_size=2, max_image_tokens=16)
MUSE_VIDEO = dict(patch_size=4, temporal_patch_size=2, merge_size=2, max_video_frame_tokens=16)
# two layers: sliding with RoPE, then full attention with NoPE (the config's own pattern for 2 layers)
MUSE_TEXT = dict(sliding_window=12, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
MUSE_VISION = dict(patch_size=4, merge_size=2, pos_emb_height=8, pos_emb_width=8, max_position_embeddings=64)
MUSE_PROJECTOR = dict(out_hidden_size=32 * 2 * 2, projector_hidden_size=64)


def _muse_spec(text: dict = {}, config: dict = {}, **extra) -> TinySpec:
    return TinySpec(tokens=MUSE_TOKENS, template=MUSE_TEMPLATE, image_tokens=16, processed_size=(32, 32),
                    token_ids=MUSE_IDS, text={**MUSE_TEXT, **text}, vision=MUSE_VISION,
                    config={**MUSE_PROJECTOR, **config},
                    image_processor=("MuseGlimmerImageProcessor", MUSE_PIXELS),
                    video_processor=("MuseGlimmerVideoProcessor", MUSE_VIDEO), **extra)


register(
    Family("Muse Glimmer", "muse_glimmer", "MuseGlimmerForConditionalGeneration", "MuseGlimmerProcessor",
           resolution=(448, 448), layout=muse_layout, tiny=_muse_spec(),
           note="one <|patch|> per merged 2 × 2 patch block (vision_config.merge_size; 448 px / 28 = 16 × 16 = "
                "256 tokens) between <|image_start|>/<|image_end|>; gated softmax attention with sliding and NoPE "
                "layers; logits softcap(logits × output_multiplier); tiny template a stand-in; runs at 448 × 448",
           logit_scale=muse_logit_scale, **TRANSFORMERS_DECODER),
    Family("Muse Spark", "muse_spark", "MuseSparkForConditionalGeneration", "MuseSparkProcessor",
           resolution=(448, 448), layout=muse_layout,
           tiny=_muse_spec(
               text=dict(mlp_layer_types=["dense", "sparse"], num_local_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=32, moe_hidden_size=32),
               config={"audio_config": dict(patch_sizes=[4, 2], hidden_sizes=[16, 32], depths=[1, 1],
                                            num_hidden_layers=2, out_hidden_size=64)},
               feature_extractor=("MuseSparkFeatureExtractor", {})),
           note="Muse Glimmer's image block (<|patch|> per merged 2 × 2 block) and gated sliding/NoPE attention, "
                "with MuseSparkResidualGate sub-layers, a mixture-of-experts MLP and an audio tower; logits "
                "softcap(logits × output_multiplier); tiny template a stand-in; runs at 448 × 448",
           logit_scale=muse_logit_scale, **TRANSFORMERS_DECODER),
)
