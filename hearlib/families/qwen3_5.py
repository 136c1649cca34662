"""The Qwen3.5 lineage: Qwen3.5 and Qwen3.5-MoE, hybrid decoders (Gated DeltaNet + softmax attention).

Decoder: ``text_config.layer_types`` interleaves ``"linear_attention"`` layers (``Qwen3_5GatedDeltaNet``
under ``linear_attn``: a short causal convolution and a gated delta-rule recurrence, no attention
interface) with ``"full_attention"`` layers (``Qwen3_5Attention`` under ``self_attn``: gated softmax
attention through ``ALL_ATTENTION_FUNCTIONS``, output ``o_proj(attention · sigmoid(gate))``); the
published checkpoints have one full-attention layer in four. HeAr covers the full-attention layers only
(:attr:`Family.softmax_layer`; docs/METHOD.md, "Hybrid decoders"): N = full-attention layers × heads, the
Gated DeltaNet layers run as the model runs them, and the literal path runs (their state carries the
image into the text positions, which the fast path's text-only forward lacks).

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (Qwen3-VL's tower: patch 16, 2 × 2 merge).

Tiny models: Qwen3-VL's tiny tower and image processor (square inputs → 64 × 64 → 16 tokens); a
decoder of four layers, linear / full / linear / full (two softmax-attention layers of 4 query and 2
key/value heads, two Gated DeltaNet layers of 2 key and 4 value heads of 8); interleaved M-RoPE on half
of each head ([2, 1, 1]). Template: the hub's Qwen3.5 template for one user turn (no default system turn,
the generation prompt opens a thinking block: ``<|im_start|>assistant\\n<think>\\n``). That default is the
thinking checkpoints'; Qwen3.5-0.8B's hub template (tests/data/hub/qwen3.5-0.8b, "operates in non-thinking mode
by default") closes an empty block, ``<think>\\n\\n</think>\\n\\n``, unless ``enable_thinking`` is true. A real
checkpoint runs with its own template (tests/families/test_real_configs.py).
"""
from __future__ import annotations

from hearlib.families.qwen2_vl import QWEN_IDS, QWEN_TOKENS, ROPE, qwen_layout, qwen_pixels
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["full_attention_layer", "QWEN3_5_TEMPLATE", "QWEN3_5_TOKENS", "QWEN3_5_TEXT"]


def full_attention_layer(layer) -> bool:
    """A Qwen3.5-style decoder layer with softmax attention (``layer_types[i] == "full_attention"``)."""
    return getattr(layer, "block_type", getattr(layer, "layer_type", None)) == "full_attention"


# transformers loads Qwen3_5Tokenizer (a BPE rebuilt from the saved vocabulary) whatever tokenizer class is saved
QWEN3_5_TOKENS = Tokens(QWEN_TOKENS.specials + ("<think>", "</think>"), QWEN_TOKENS.roles, QWEN_TOKENS.named,
                        words_as_added_tokens=True)
QWEN3_5_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
# two softmax-attention layers with a Gated DeltaNet layer before each; M-RoPE on half of each head
QWEN3_5_TEXT = dict(
    num_hidden_layers=4, layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
    linear_conv_kernel_dim=4,
    rope_parameters={**ROPE, "partial_rotary_factor": 0.5, "mrope_section": [2, 1, 1], "mrope_interleaved": True})


def _spec(text: dict) -> TinySpec:
    return TinySpec(tokens=QWEN3_5_TOKENS, template=QWEN3_5_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                    token_ids=QWEN_IDS, text=text,
                    image_processor=("Qwen2VLImageProcessor", qwen_pixels(mean=[0.5] * 3, std=[0.5] * 3)),
                    video_processor=("Qwen3VLVideoProcessor", qwen_pixels(mean=[0.5] * 3, std=[0.5] * 3)))


HYBRID = dict(TRANSFORMERS_DECODER, softmax_layer=full_attention_layer)
register(
    Family("Qwen3.5", "qwen3_5", "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=qwen_layout, tiny=_spec(QWEN3_5_TEXT),
           note="Qwen3-VL's tower and layout; a hybrid decoder (Gated DeltaNet linear attention in three "
                "layers of four): HeAr covers the full-attention layers only (a quarter of the decoder layers "
                "in the published checkpoints), literal path; runs at 448 × 448 (14 × 14)",
           **HYBRID),
    Family("Qwen3.5-MoE", "qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_spec(dict(QWEN3_5_TEXT, intermediate_size=DROP, num_experts=4, num_experts_per_tok=2,
                           moe_intermediate_size=32, shared_expert_intermediate_size=32)),
           note="Qwen3.5 with mixture-of-experts MLPs (per token; attention unchanged): HeAr covers the "
                "full-attention layers only, literal path; runs at 448 × 448 (14 × 14)",
           **HYBRID),
)
