"""The Nemotron-H Omni lineage: a RADIO tower, a 2 × 2 pixel shuffle and a Nemotron-H hybrid (Mamba-2 + attention) decoder.

Image: ``NemotronH_Omni_Reasoning_V3ImageProcessor`` resizes the whole image to a patch grid near its own, scaled
into [``min_num_patches``, ``max_num_patches``] (1024 and 13312 patches of 16 px) with even sides, and packs the
patches row-major (``image_grid_hw``); at 512 × 512 the grid is 32 × 32. The processor writes
``<img>`` + ``<image>`` × (grid / 4) + ``</img>``; ``get_image_features`` drops RADIO's class and register tokens
and pixel-shuffles each image's grid by ``downsample_ratio`` 0.5, so the image tokens are one row-major grid of
(h/32) × (w/32) over the whole image (InternVL's pixel shuffle).

Decoder: Nemotron-H (``text_config`` ``nemotron_h``) under the top-level class's ``language_model``
(``NemotronHForCausalLM``: ``model`` the decoder, ``lm_head``): one mixer per block, ``layers_block_type`` naming
it: ``"linear_attention"`` blocks are Mamba-2 (``NemotronHMamba2Mixer``, a selective state-space scan along the
sequence), ``"full_attention"`` blocks ``NemotronHAttention`` under ``mixer`` (no positional encoding, through
``ALL_ATTENTION_FUNCTIONS``, output ``o_proj``), ``"mlp"``/``"moe"`` blocks mix no tokens. HeAr covers the
attention blocks only (docs/METHOD.md, "Hybrid decoders"), literal path; the final norm is ``norm_f``.

Tiny model: RADIO of patch 8, the image processor at 64 patches (any square input → 64 × 64 → 8 × 8 patches →
4 × 4 = 16 tokens), and a four-block decoder Mamba-2 / attention / MLP / attention. Template: ChatML with the
image as ``<image>`` and a newline before the text; no hub template or tokenizer is stored here to pin it to.
"""
from __future__ import annotations

import numpy as np

from hearlib.families.geometry import single_grid
from hearlib.families.registry import Family, TinySpec, Tokens, register

__all__ = ["attention_block", "nemotron_h_omni_layout"]


def attention_block(layer) -> bool:
    """A Nemotron-H block whose mixer is softmax attention (``layers_block_type[i] == "full_attention"``)."""
    return getattr(layer, "block_type", None) == "full_attention"


def nemotron_h_omni_layout(config, processor, sample, width, height):
    """One row-major grid: the image's patch grid (``image_grid_hw``) pixel-shuffled by ``downsample_ratio``."""
    grid = np.asarray(sample.inputs["image_grid_hw"].cpu()).reshape(-1, 2)[0]
    merge = round(1 / config.downsample_ratio)
    rows, cols = (int(v) // merge for v in grid)
    return single_grid(rows, cols, width, height), {}


NEMOTRON_TOKENS = Tokens(("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<image>", "<img>", "</img>",
                          "<video>", "<so_embedding>", "<so_start>", "<so_end>"),
                         dict(bos_token="<s>", eos_token="<|im_end|>", unk_token="<unk>", pad_token="</s>"),
                         {"image_token": "<image>", "video_token": "<video>", "audio_token": "<so_embedding>",
                          "image_start_token": "<img>", "image_end_token": "</img>"})
NEMOTRON_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# any square input -> 8 × 8 patches of 8 (64 ≤ patches ≤ 65 rounds every square to 8 × 8) -> 4 × 4 tokens
NEMOTRON_PIXELS = dict(patch_size=8, min_num_patches=64, max_num_patches=65, image_mean=[0.5] * 3,
                       image_std=[0.5] * 3)
# Mamba-2, attention, MLP, attention; Mamba-2 of 8 heads of 16 (expand 2 × hidden 64)
NEMOTRON_H_TEXT = dict(num_hidden_layers=4, layers_block_type=["linear_attention", "full_attention", "mlp",
                                                               "full_attention"],
                       mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=16, n_groups=2, chunk_size=16,
                       expand=2)

register(
    Family("Nemotron-H Omni", "nemotron_h_omni", "NemotronH_Omni_Reasoning_V3", "NemotronH_Omni_Reasoning_V3Processor",
           resolution=(512, 512), layout=nemotron_h_omni_layout,
           tiny=TinySpec(tokens=NEMOTRON_TOKENS, template=NEMOTRON_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids={"image_token_id": "<image>", "video_token_id": "<video>",
                                    "audio_token_id": "<so_embedding>"},
                         text=NEMOTRON_H_TEXT, vision={"max_img_size": 128, "mlp_ratio": 2.0, "video_temporal_patch_size": 2},
                         config={"vision_hidden_size": 32, "projector_hidden_size": 64},
                         image_processor=("NemotronH_Omni_Reasoning_V3ImageProcessor", NEMOTRON_PIXELS),
                         video_processor=("NemotronH_Omni_Reasoning_V3VideoProcessor",
                                          dict(patch_size=8, image_mean=[0.5] * 3, image_std=[0.5] * 3)),
                         feature_extractor=("ParakeetFeatureExtractor", {})),
           note="RADIO tower, 2 × 2 pixel shuffle (one row-major grid of h/32 × w/32 tokens); a Nemotron-H hybrid "
                "decoder (Mamba-2 blocks between attention and MLP/MoE blocks): HeAr covers the attention blocks "
                "only, literal path; runs at 512 × 512 (16 × 16 tokens)",
           decoder="language_model.model", layers="layers", attention="mixer", output_projection="o_proj",
           final_norm="norm_f", lm_head="language_model.lm_head", text_config="text_config",
           image_token_id="image_token_id", softmax_layer=attention_block,
           requires=("5.23", "before 5.23 the ParakeetFeatureExtractor its processor builds requires librosa, "
                             "which hearlib does not install")),
)
