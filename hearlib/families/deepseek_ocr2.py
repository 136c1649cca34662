"""DeepSeek-OCR 2 (``deepseek_ocr2``).

Layout: each view (crops of ``tile_size`` 768 px when the image is larger than a tile, then the global view
padded to a square of ``size`` 1024 px) goes through a SAM ViT-B (DeepseekOcr2SamVisionEncoder: patch 16, neck,
two stride-2 convolutions) and then DeepseekOcr2VisionEncoder, a Qwen2-style stack over the SAM patches
followed by learned queries (``query_768_resolution`` 12 × 12 when a view has ≤ 144 patches, else
``query_1024_resolution`` 16 × 16; bidirectional over the patches, causal among the queries); only the
queries' outputs become image tokens. The image-token block is every crop's queries, the global view's queries
and one ``view_separator`` (DeepseekOcr2Model.get_image_features; DeepseekOcr2Processor.replace_image_token
counts ``ceil(side / patch_size / downsample_ratio)²`` a view + 1), all with the ``<image>`` id, before a
DeepSeek-V2-style mixture-of-experts decoder with ordinary multi-head softmax attention. The queries read
every patch and lie nowhere on the image: the layout names every token non-spatial, by view (attribution
works, image maps have no geometry). Runs at 768 × 768 (no crops: 256 global queries + 1 separator).

Tiny model: SAM 48 px with patch 1 (weights drawn at std 0.02: the config's ``initializer_range`` 1e-10 would
make every view alike; 48 × 48 patches → 12 × 12 after the two stride-2 convolutions, so
the view takes the 144 ``query_768_resolution`` queries, as a 768 px tile does), a 2-layer query encoder of
width 32, a decoder whose layer 1 is MoE (4 routed experts, top 2, one shared); the image processor brings
every input of up to 768 px (``tile_size``: no crops) to one 48 px global view → 144 + 1 image tokens. Template: a stand-in not checked against hub files (none here): the model card's plain prompt
``<image>\\n{p}`` after the tokenizer's BOS, no roles.
"""
from __future__ import annotations

import math

import numpy as np

from hearlib.families.janus import BOS, EOS
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["deepseek_ocr2_layout", "deepseek_ocr_sam", "deepseek_ocr_spec"]


def deepseek_ocr2_layout(config, processor, sample, width, height):
    """Every token non-spatial: each crop's queries, the global view's queries, the view separator."""
    n_crops = int(np.asarray(sample.inputs["num_local_patches"]).ravel()[0]) if "num_local_patches" in sample.inputs else 0
    per_crop = math.ceil(processor.image_processor.tile_size / processor.patch_size / processor.downsample_ratio) ** 2
    n_global = sample.n_image - 1 - n_crops * per_crop
    groups = {f"crop {i} queries": tuple(range(i * per_crop, (i + 1) * per_crop)) for i in range(n_crops)}
    groups["global view queries"] = tuple(range(n_crops * per_crop, n_crops * per_crop + n_global))
    groups["view separator"] = (sample.n_image - 1,)
    return [], groups


DEEPSEEK_OCR_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}"
)
_TOKENS = Tokens((BOS, EOS, "<unk>", "<pad>", "<image>"),
                 dict(bos_token=BOS, eos_token=EOS, unk_token="<unk>", pad_token="<pad>"), {"image_token": "<image>"},
                 prepend=BOS)
# a decoder whose layer 1 is mixture-of-experts: 4 routed experts, top 2, one shared
_MOE_TEXT = dict(n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
                 mlp_layer_types=["dense", "sparse"], rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def deepseek_ocr_sam(image_size: int, window_size: int) -> dict:
    """A tiny SAM ViT of patch 1 (two layers of width 32, the second global; two stride-2 convolutions after
    the neck), its weights drawn at std 0.02: the config's ``initializer_range`` 1e-10 makes every view alike."""
    return dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, image_size=image_size,
                patch_size=1, window_size=window_size, global_attn_indexes=[1], downsample_channels=[32, 32],
                mlp_dim=64, initializer_range=0.02)


def deepseek_ocr_spec(image_tokens: int, side: int, vision: dict, image_processor: tuple[str, dict],
                      text: dict | None = None) -> TinySpec:
    """A tiny spec of the DeepSeek-OCR lineage: the plain prompt after BOS, the ``<image>`` token, the
    mixture-of-experts decoder (``text`` on top), processor patch 1 with downsample ratio 4; square inputs
    become ``side`` px."""
    return TinySpec(tokens=_TOKENS, template=DEEPSEEK_OCR_TEMPLATE, image_tokens=image_tokens,
                    processed_size=(side, side), token_ids={"image_token_id": "<image>"},
                    text={**_MOE_TEXT, **(text or {})}, vision=vision, image_processor=image_processor,
                    processor=dict(patch_size=1, downsample_ratio=4))


_QUERY_ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=512)
# DeepseekOcr2Processor passes crop_to_patches=True itself; a tile of 768 px keeps inputs up to 768 px uncropped
_PIXELS = dict(size={"height": 48, "width": 48}, tile_size=768, image_mean=[0.5] * 3, image_std=[0.5] * 3)

register(
    Family("DeepSeek-OCR 2", "deepseek_ocr2", "DeepseekOcr2ForConditionalGeneration", "DeepseekOcr2Processor",
           resolution=(768, 768), layout=deepseek_ocr2_layout,
           tiny=deepseek_ocr_spec(145, 48, dict(sam_config=deepseek_ocr_sam(48, 12), encoder_config=_QUERY_ENCODER),
                                  ("DeepseekOcr2ImageProcessor", _PIXELS)),
           note="each view's image tokens are learned queries (144 or 256) that read all of its SAM patches "
                "(DeepseekOcr2VisionEncoder), + one view_separator: no grid on the image, so the layout names "
                "them non-spatial by view; a DeepSeek-V2-style MoE decoder with multi-head softmax attention; "
                "runs at 768 × 768 (one 1024 px global view: 257 tokens)",
           **TRANSFORMERS_DECODER),
)
