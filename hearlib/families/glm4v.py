"""The GLM-V lineage: GLM-4.1V, GLM-4.5V (mixture-of-experts decoder), GLM-4.6V, glmga (GLM-4.6V's model under
GlmgaConfig, with GlmgaImageProcessor) and GLM-OCR (GLM-4.1V's classes, smaller). transformers maps no processor
to glmga or glm_ocr; both records name Glm46VProcessor, which the tiny folders' processor_config.json carry.

Layout: :func:`hearlib.families.qwen2_vl.qwen_layout` (dynamic resolution, patch 14, 2 × 2 merge);
``<|begin_of_image|>``/``<|end_of_image|>`` are not image tokens.

Tiny models: vision depth 2, patch 8, 2 × 2 merge; a GLM-4 decoder with partial rotary (half of
head_dim) and M-RoPE [1, 1, 2]. GLM's smart_resize counts pixels over two frames (temporal patch 2),
so its bounds are twice Qwen2-VL's: square inputs → 64 × 64 → 16 image tokens. Template
``[gMASK]<sop><|user|>\\n<|begin_of_image|><|image|><|end_of_image|>{p}<|assistant|>\\n``.
"""
from __future__ import annotations

from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.qwen2_vl import qwen_layout
from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

GLM4V_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
GLM_TOKENS = Tokens(("<|endoftext|>", "<unk>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>",
                  "<|video|>"), dict(eos_token="<|endoftext|>", unk_token="<unk>", pad_token="<|endoftext|>"),
                 {"image_token": "<|image|>", "video_token": "<|video|>"})
GLM_IDS = {"image_token_id": "<|image|>", "video_token_id": "<|video|>", "image_start_token_id": "<|begin_of_image|>",
        "image_end_token_id": "<|end_of_image|>", "video_start_token_id": "<|begin_of_video|>",
        "video_end_token_id": "<|end_of_video|>"}
_TEXT = {"head_dim": DROP, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                               "mrope_section": [1, 1, 2], "partial_rotary_factor": 0.5}}
GLM_PIXELS = dict(size={"shortest_edge": 2 * 60 * 60, "longest_edge": 2 * 6000}, patch_size=8, temporal_patch_size=2,
               merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)


def _glm_spec(processors: str, **text) -> TinySpec:
    return TinySpec(tokens=GLM_TOKENS, template=GLM4V_TEMPLATE, image_tokens=16, processed_size=(64, 64),
                    token_ids=GLM_IDS, text={**_TEXT, **text},
                    image_processor=(f"{processors}ImageProcessor", GLM_PIXELS),
                    video_processor=(f"{processors}VideoProcessor", GLM_PIXELS))


register(
    Family("GLM-4.1V", "glm4v", "Glm4vForConditionalGeneration", "Glm4vProcessor",
           resolution=(448, 448), layout=qwen_layout, tiny=_glm_spec("Glm4v"),
           note="dynamic resolution as Qwen2-VL (patch 14, 2 × 2 merge, M-RoPE on half of each head); "
                "<|begin_of_image|>/<|end_of_image|> are not image tokens; runs at 448 × 448 (16 × 16)",
           **TRANSFORMERS_DECODER),
    Family("GLM-4.5V", "glm4v_moe", "Glm4vMoeForConditionalGeneration", "Glm4vProcessor",
           resolution=(448, 448), layout=qwen_layout,
           tiny=_glm_spec("Glm4v", n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                          n_shared_experts=1, first_k_dense_replace=1),
           note="GLM-4.1V's vision and layout with a mixture-of-experts decoder; runs at 448 × 448",
           **TRANSFORMERS_DECODER),
    Family("GLM-4.6V", "glm46v", "Glm46VForConditionalGeneration", "Glm46VProcessor",
           resolution=(448, 448), layout=qwen_layout, tiny=_glm_spec("Glm46V"),
           note="GLM-4.1V's vision tower and decoder classes (glm4v_vision, glm4v_text) under the Glm46V wrapper; "
                "runs at 448 × 448",
           **TRANSFORMERS_DECODER),
    Family("GLM (glmga)", "glmga", "Glm46VForConditionalGeneration", "Glm46VProcessor",
           resolution=(448, 448), layout=qwen_layout, tiny=_glm_spec("Glmga"),
           note="GlmgaConfig over GLM-4.6V's model and processor (transformers maps no processor to glmga); "
                "GlmgaImageProcessor resizes to multiples of patch × merge × patch_expand_factor (1); runs at "
                "448 × 448",
           **TRANSFORMERS_DECODER),
    Family("GLM-OCR", "glm_ocr", "GlmOcrForConditionalGeneration", "Glm46VProcessor",
           resolution=(448, 448), layout=qwen_layout, tiny=_glm_spec("Glm46V"),
           note="GLM-4.1V's layout with glm_ocr_vision / glm_ocr_text (attention with bias-free q/k/v); the hub "
                "checkpoint's processor is Glm46VProcessor (transformers maps none to glm_ocr); runs at 448 × 448",
           **TRANSFORMERS_DECODER),
)
