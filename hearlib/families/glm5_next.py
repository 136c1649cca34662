"""The GLM-5-Next lineage: GLM-4.xV's tower and layout before a hybrid decoder (Kimi-style delta-rule linear attention +
DSA sparse softmax attention, hyper-connections).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (``image_grid_thw``, patch 14, 2 × 2 merge, one ``<|image|>``
per merged patch). ``Glm5NextImageProcessor`` resizes to a budget of merged patches and pads the bottom/right
edge up to a multiple of 28 px; at 448 × 448 (a multiple of 28, 256 tokens, within [16, 8000]) it neither
resizes nor pads.

Decoder: ``Glm5NextTextDecoderLayer.block_type`` (``text_config.layer_types``) is ``"linear_attention"``
(``Glm5NextTextLinearAttention``: short convolutions and a gated delta-rule recurrence, no attention interface)
or ``"indexed_attention"`` (``Glm5NextTextAttention``: MLA without positional encoding through
``ALL_ATTENTION_FUNCTIONS``, output ``o_proj``); both sit under ``self_attn``. The DSA indexer
(``Glm5NextTextIndexer``; ``indexer_types`` ``"shared"`` layers reuse the previous layer's top-k) selects each
query's keys, and ``build_attention_mask_from_topk`` turns the selection into the mask the attention function
receives (boolean for sdpa, additive otherwise): hearlib's attention attends under that mask, as the model does.
The residual stream runs as ``hc_mult`` hyper-connection streams (``Glm5NextTextHyperConnection``; per token, no
token mixing) merged by ``hc_head`` before ``norm``. HeAr covers the indexed-attention layers only (docs/METHOD.md,
"Hybrid decoders"), literal path.

Tiny model: GLM-4.xV's tiny tower and pixels (square inputs → 64 × 64 → 16 tokens, the image processor's token
budget fixed at 16), a four-layer decoder linear / indexed / linear / indexed (4 heads, MLA ranks 32, every indexer
its own, top-8 keys in pools of 4: narrower than a prompt), two hyper-connection streams. Template: GLM-4.6V's
(:data:`hearlib.families.glm4v.GLM4V_TEMPLATE`); no GLM-5-Next hub template is stored here to pin it to.
"""
from __future__ import annotations

from hearlib.families.glm4v import GLM4V_TEMPLATE, GLM_IDS, GLM_PIXELS, GLM_TOKENS
from hearlib.families.qwen2_vl import qwen_layout
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, register

__all__ = ["indexed_attention_layer"]


def indexed_attention_layer(layer) -> bool:
    """A GLM-5-Next decoder layer with (DSA) softmax attention, not delta-rule linear attention."""
    return getattr(layer, "block_type", "linear_attention") != "linear_attention"


GLM5_NEXT_TEXT = dict(
    num_hidden_layers=4, num_key_value_heads=4, head_dim=DROP,
    layer_types=["linear_attention", "indexed_attention", "linear_attention", "indexed_attention"],
    indexer_types=["full"] * 4, mlp_layer_types=["dense"] * 4,
    q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=0, v_head_dim=16,
    index_topk=8, index_kpool=4, index_head_dim=16, index_n_heads=2,
    linear_head_dim=16, linear_num_heads=4, linear_conv_kernel_dim=4, hc_mult=2,
    n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
# the image processor's budget in merged patches: min = max = 16 brings every square input to 64 × 64
GLM5_NEXT_PIXELS = {k: v for k, v in GLM_PIXELS.items() if k != "size"} | dict(min_image_tokens=16, max_image_tokens=16)

register(
    Family("GLM-5-Next", "glm5_next", "Glm5NextForConditionalGeneration", "Glm5NextProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=TinySpec(tokens=GLM_TOKENS, template=GLM4V_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                         token_ids=GLM_IDS, text=GLM5_NEXT_TEXT, vision={"projection_intermediate_size": 64},
                         image_processor=("Glm5NextImageProcessor", GLM5_NEXT_PIXELS),
                         video_processor=("Glm5NextVideoProcessor", GLM5_NEXT_PIXELS)),
           note="GLM-4.xV's layout; a hybrid decoder (delta-rule linear attention in three layers of four, DSA "
                "sparse MLA in the rest, its top-k reaching the attention function as a mask): HeAr covers the "
                "indexed-attention layers only, literal path; runs at 448 × 448 (16 × 16)",
           **dict(TRANSFORMERS_DECODER, softmax_layer=indexed_attention_layer)),
)
