"""The model families hearlib supports: one :class:`Family` record per ``config.model_type``.

A record says where hearlib finds what it touches in a transformers model of the family
(the text decoder, each layer's self-attention and its output projection, the final norm,
the unembedding, the image token id), the input size the family runs at, the function of
:mod:`hearlib.families.geometry` that places its image tokens on the image, and how
:mod:`hearlib.families.tiny` builds a tiny random-weight model of it. :mod:`hearlib.method.engine`,
:mod:`hearlib.method.loading`, :mod:`hearlib.families.geometry` and :mod:`hearlib.families.tiny` read these records
and nothing else; docs/ADDING_A_MODEL_FAMILY.md walks through adding one.

Paths are attribute paths (``"model.language_model"``), each relative to the object its
field names.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from hearlib.families import geometry
from hearlib.errors import UnsupportedModel
from hearlib.families.refusals import NOT_YET, REASONS

__all__ = ["Family", "TinyModel", "FAMILIES", "family_of", "supported_architectures", "resolve_path"]


@dataclass(frozen=True)
class TinyModel:
    """How :func:`hearlib.families.tiny.build_tiny` builds a tiny model of the family.

    ``builder``: name of a function of :mod:`hearlib.families.tiny` that returns
    ``(config, model_class, processor)`` (2 decoder layers, 4 query / 2 key-value heads,
    a word-level tokenizer). ``image_tokens``: image tokens one square image of any size
    gives; ``processed_size``: the (w, h) the image processor brings a square input to."""

    builder: str
    image_tokens: int
    processed_size: tuple[int, int]


@dataclass(frozen=True)
class Family:
    """Everything hearlib needs to know about one model family (one ``model_type``)."""

    name: str                        # the paper's name, e.g. "LLaVA-1.5"
    model_type: str                  # config.model_type
    model_class: str                 # transformers class AutoModelForImageTextToText loads
    processor_class: str             # transformers class AutoProcessor loads
    decoder: str                     # model -> text decoder (inputs_embeds in, last_hidden_state out)
    layers: str                      # decoder -> its list of decoder layers
    attention: str                   # decoder layer -> its self-attention module (has layer_idx)
    output_projection: str           # self-attention -> the Linear mapping heads × head_dim to hidden
    final_norm: str                  # decoder -> the norm applied after the last layer
    lm_head: str                     # model -> the unembedding Linear
    text_config: str                 # model.config -> the decoder's config (also the key of
                                     # set_attn_implementation that reaches only the decoder)
    image_token_id: str              # model.config attribute holding the image token id
    resolution: tuple[int, int] | None  # fixed input (w, h) hearlib resizes to; None = processor's own
    layout: Callable                 # hearlib.families.geometry function: where each image token lies
    tiny: TinyModel | None           # the tiny model for tests (None: a derived record)
    note: str                        # what is particular about the family
    derived: bool = False            # made by derived_family(), not registered: checked on load

    # -- resolving the paths on a model ----------------------------------------------------
    def decoder_of(self, model):
        return resolve_path(model, self.decoder, self.name)

    def layers_of(self, model) -> list:
        return list(resolve_path(self.decoder_of(model), self.layers, self.name))

    def attention_modules(self, model) -> list:
        """Each decoder layer's self-attention module, in layer order."""
        return [resolve_path(layer, self.attention, self.name) for layer in self.layers_of(model)]

    def output_projection_of(self, attention_module):
        return resolve_path(attention_module, self.output_projection, self.name)

    def final_norm_of(self, model):
        return resolve_path(self.decoder_of(model), self.final_norm, self.name)

    def lm_head_of(self, model):
        return resolve_path(model, self.lm_head, self.name)

    def text_config_of(self, config):
        return resolve_path(config, self.text_config, self.name)

    def image_token_id_of(self, config) -> int:
        return resolve_path(config, self.image_token_id, self.name)


def resolve_path(obj, path: str, family: str = ""):
    """``obj.a.b`` for ``path="a.b"``; UnsupportedModel naming the missing step if absent."""
    try:
        return functools.reduce(getattr, path.split("."), obj)
    except AttributeError:
        raise UnsupportedModel(f"{family or type(obj).__name__}: {type(obj).__name__} has no {path!r}; "
                               "the transformers version may lay this family out differently") from None


# The decoder layout every supported family shares in transformers 5 (Llama / Qwen2 decoders
# under a *ForConditionalGeneration wrapper).
_TRANSFORMERS_DECODER = dict(decoder="model.language_model", layers="layers", attention="self_attn",
                             output_projection="o_proj", final_norm="norm", lm_head="lm_head",
                             text_config="text_config", image_token_id="image_token_id")

FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("LLaVA-1.5", "llava", "LlavaForConditionalGeneration", "LlavaProcessor",
           resolution=None, layout=geometry.llava_layout,
           tiny=TinyModel("tiny_llava", image_tokens=16, processed_size=(32, 32)),
           note="one CLIP grid (CLS dropped); the processor's shortest-edge resize and centre crop",
           **_TRANSFORMERS_DECODER),
    Family("LLaVA-NeXT", "llava_next", "LlavaNextForConditionalGeneration", "LlavaNextProcessor",
           resolution=(336, 336), layout=geometry.llava_next_layout,
           tiny=TinyModel("tiny_llava_next", image_tokens=36, processed_size=(32, 32)),
           note="anyres: base grid + unpadded high-res grid with a newline token per row; "
                "the token count depends on the input size, so it runs at 336 × 336",
           **_TRANSFORMERS_DECODER),
    Family("Qwen2-VL", "qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_qwen2_vl", image_tokens=16, processed_size=(64, 64)),
           note="dynamic resolution, 2 × 2 patches merged per token, M-RoPE positions; runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("Qwen2.5-VL", "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_qwen2_5_vl", image_tokens=16, processed_size=(64, 64)),
           note="as Qwen2-VL, with a window-attention vision tower; runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("InternVL2.5", "internvl", "InternVLForConditionalGeneration", "InternVLProcessor",
           resolution=(448, 448), layout=geometry.internvl_layout,
           tiny=TinyModel("tiny_internvl", image_tokens=16, processed_size=(64, 64)),
           note="448 px tiles, pixel shuffle 0.5 (256 tokens a tile); at 448 × 448 one tile, no thumbnail; "
                "<img>/</img> around the image tokens are not image tokens",
           **_TRANSFORMERS_DECODER),
    Family("Gemma 3", "gemma3", "Gemma3ForConditionalGeneration", "Gemma3Processor",
           resolution=None, layout=geometry.gemma3_layout,
           tiny=TinyModel("tiny_gemma3", image_tokens=16, processed_size=(64, 64)),
           note="SigLIP 896 px average-pooled to 16 × 16 = 256 tokens, resized whole (pan-and-scan off); "
                "the image block attends bidirectionally and 5 of 6 layers use a sliding window (the "
                "engine follows the model's masks); <start_of_image>/<end_of_image> are not image tokens",
           **_TRANSFORMERS_DECODER),
    Family("PaliGemma", "paligemma", "PaliGemmaForConditionalGeneration", "PaliGemmaProcessor",
           resolution=None, layout=geometry.paligemma_layout,
           tiny=TinyModel("tiny_paligemma", image_tokens=16, processed_size=(32, 32)),
           note="one SigLIP grid over the whole image; a prefix-LM: image and prompt attend to each other "
                "bidirectionally, so the fast path's premise fails and the engine runs the literal path",
           **_TRANSFORMERS_DECODER),
    Family("LLaVA-OneVision", "llava_onevision", "LlavaOnevisionForConditionalGeneration",
           "LlavaOnevisionProcessor", resolution=(384, 384), layout=geometry.llava_onevision_layout,
           tiny=TinyModel("tiny_llava_onevision", image_tokens=36, processed_size=(32, 32)),
           note="anyres-max-9: base grid + unpadded high-res grid with a newline per row; SigLIP has no CLS "
                "token; runs at 384 × 384 (729 + 27 × 28 = 1485 tokens)",
           **_TRANSFORMERS_DECODER),
    Family("Mistral 3", "mistral3", "Mistral3ForConditionalGeneration", "PixtralProcessor",
           resolution=(448, 448), layout=geometry.mistral3_layout,
           tiny=TinyModel("tiny_mistral3", image_tokens=36, processed_size=(48, 48)),
           note="Pixtral tower at the image's own size (longest edge 1540), 2 × 2 patch merger; "
                "[IMG_BREAK] after each row and [IMG_END] are not image tokens; runs at 448 × 448 (16 × 16)",
           **_TRANSFORMERS_DECODER),
    Family("ViP-LLaVA", "vipllava", "VipLlavaForConditionalGeneration", "LlavaProcessor",
           resolution=None, layout=geometry.llava_layout,
           tiny=TinyModel("tiny_vipllava", image_tokens=16, processed_size=(32, 32)),
           note="LLaVA-1.5 with the CLIP features of several vision layers concatenated (CLS dropped)",
           **_TRANSFORMERS_DECODER),
    Family("LLaVA-NeXT-Video", "llava_next_video", "LlavaNextVideoForConditionalGeneration",
           "LlavaNextVideoProcessor", resolution=(336, 336), layout=geometry.llava_next_layout,
           tiny=TinyModel("tiny_llava_next_video", image_tokens=36, processed_size=(32, 32)),
           note="LLaVA-NeXT with a video path; images as LLaVA-NeXT (anyres), run at 336 × 336",
           **_TRANSFORMERS_DECODER),
    Family("Video-LLaVA", "video_llava", "VideoLlavaForConditionalGeneration", "VideoLlavaProcessor",
           resolution=None, layout=geometry.llava_layout,
           tiny=TinyModel("tiny_video_llava", image_tokens=16, processed_size=(32, 32)),
           note="separate image and video CLIP towers (image_tower, video_tower); images as LLaVA-1.5",
           **_TRANSFORMERS_DECODER),
    Family("Qwen3-VL", "qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_qwen3_vl", image_tokens=16, processed_size=(64, 64)),
           note="as Qwen2.5-VL with patch 16 and interleaved M-RoPE; DeepStack adds vision features to the "
                "first decoder layers' hidden states at the image positions only; runs at 448 × 448 (14 × 14)",
           **_TRANSFORMERS_DECODER),
    Family("Qwen3-VL-MoE", "qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", "Qwen3VLProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_qwen3_vl_moe", image_tokens=16, processed_size=(64, 64)),
           note="Qwen3-VL with mixture-of-experts MLPs (per token; attention unchanged); runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("GLM-4.1V", "glm4v", "Glm4vForConditionalGeneration", "Glm4vProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_glm4v", image_tokens=16, processed_size=(64, 64)),
           note="dynamic resolution as Qwen2-VL (patch 14, 2 × 2 merge, M-RoPE on half of each head); "
                "<|begin_of_image|>/<|end_of_image|> are not image tokens; runs at 448 × 448 (16 × 16)",
           **_TRANSFORMERS_DECODER),
    Family("GLM-4.5V", "glm4v_moe", "Glm4vMoeForConditionalGeneration", "Glm4vProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_glm4v_moe", image_tokens=16, processed_size=(64, 64)),
           note="GLM-4.1V's vision and layout with a mixture-of-experts decoder; runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("Aya Vision", "aya_vision", "AyaVisionForConditionalGeneration", "AyaVisionProcessor",
           resolution=(364, 364), layout=geometry.aya_vision_layout,
           tiny=TinyModel("tiny_aya_vision", image_tokens=16, processed_size=(64, 64)),
           note="SigLIP 364 px tiles pixel-shuffled 2 × 2 (169 tokens a tile), a Cohere 2 decoder with sliding-"
                "window layers; at 364 × 364 one tile; tile and start/end markers are not image tokens",
           **_TRANSFORMERS_DECODER),
    Family("Command A Vision", "cohere2_vision", "Cohere2VisionForConditionalGeneration", "Cohere2VisionProcessor",
           resolution=(512, 512), layout=geometry.cohere2_vision_layout,
           tiny=TinyModel("tiny_cohere2_vision", image_tokens=16, processed_size=(64, 64)),
           note="SigLIP 512 px tiles pixel-shuffled 2 × 2 (256 tokens a tile) + a line-break token per tile, "
                "a Cohere 2 decoder; at 512 × 512 one tile",
           **_TRANSFORMERS_DECODER),
    Family("Idefics3", "idefics3", "Idefics3ForConditionalGeneration", "Idefics3Processor",
           resolution=(364, 364), layout=geometry.idefics3_layout,
           tiny=TinyModel("tiny_idefics3", image_tokens=16, processed_size=(64, 64)),
           note="SigLIP 364 px / patch 14 pixel-shuffled 2 × 2 (169 tokens a view); split into tiles + a global image "
                "(row/col and <global-img> tokens are not image tokens); decoder under model.text_model",
           **dict(_TRANSFORMERS_DECODER, decoder="model.text_model")),
    Family("SmolVLM", "smolvlm", "SmolVLMForConditionalGeneration", "SmolVLMProcessor",
           resolution=(512, 512), layout=geometry.idefics3_layout,
           tiny=TinyModel("tiny_smolvlm", image_tokens=16, processed_size=(64, 64)),
           note="Idefics3's wrapper and layout (SigLIP tiles pixel-shuffled by scale_factor + a global image; "
                "row/col and <global-img> tokens are not image tokens; decoder under model.text_model); "
                "SmolVLMProcessor needs num2words; runs at 512 × 512",
           **dict(_TRANSFORMERS_DECODER, decoder="model.text_model")),
    Family("GLM-4.6V", "glm46v", "Glm46VForConditionalGeneration", "Glm46VProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_glm46v", image_tokens=16, processed_size=(64, 64)),
           note="GLM-4.1V's vision tower and decoder classes (glm4v_vision, glm4v_text) under the Glm46V wrapper; "
                "runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("LightOnOCR", "lighton_ocr", "LightOnOcrForConditionalGeneration", "LightOnOcrProcessor",
           resolution=(448, 448), layout=geometry.mistral3_layout,
           tiny=TinyModel("tiny_lighton_ocr", image_tokens=36, processed_size=(48, 48)),
           note="Mistral 3's Pixtral tower and 2 × 2 merger with a Qwen3 decoder; break/end tokens are not image "
                "tokens; runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
    Family("DeepSeek-VL", "deepseek_vl", "DeepseekVLForConditionalGeneration", "DeepseekVLProcessor",
           resolution=(384, 384), layout=geometry.deepseek_vl_layout,
           tiny=TinyModel("tiny_deepseek_vl", image_tokens=64, processed_size=(64, 64)),
           note="one SigLIP grid (384 px / patch 16: 24 × 24 = 576 tokens) over the image padded to a square; "
                "runs at 384 × 384 (no padding)",
           **_TRANSFORMERS_DECODER),
    Family("VideoLLaMA 3", "video_llama_3", "VideoLlama3ForConditionalGeneration", "VideoLlama3Processor",
           resolution=(448, 448), layout=geometry.video_llama_3_layout,
           tiny=TinyModel("tiny_video_llama_3", image_tokens=64, processed_size=(64, 64)),
           note="dynamic resolution (patch 14, images not merged), a Qwen2 decoder; runs at 448 × 448 (32 × 32)",
           **_TRANSFORMERS_DECODER),
    Family("PaddleOCR-VL", "paddleocr_vl", "PaddleOCRVLForConditionalGeneration", "PaddleOCRVLProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_paddleocr_vl", image_tokens=16, processed_size=(64, 64)),
           note="dynamic resolution as Qwen2-VL (patch 14, 2 × 2 merge, M-RoPE), an ERNIE-4.5-0.3B-style decoder; "
                "runs at 448 × 448 (16 × 16)",
           **_TRANSFORMERS_DECODER),
    Family("Ovis2", "ovis2", "Ovis2ForConditionalGeneration", "Ovis2Processor",
           resolution=(448, 448), layout=geometry.ovis2_layout,
           tiny=TinyModel("tiny_ovis2", image_tokens=16, processed_size=(64, 64)),
           note="each image token is a softmax-weighted mix of a visual embedding table (the visual tokenizer); "
                "one view at 448 × 448 (crops off); <IMG_START>/<IMG_GRID>/<IMG_END> are not image tokens",
           **_TRANSFORMERS_DECODER),
    Family("Qianfan-OCR", "qianfan_ocr", "QianfanOCRForConditionalGeneration", "QianfanOCRProcessor",
           resolution=(448, 448), layout=geometry.internvl_layout,
           tiny=TinyModel("tiny_qianfan_ocr", image_tokens=16, processed_size=(64, 64)),
           note="InternVL's layout (448 px tiles, pixel shuffle 0.5: 256 tokens a tile) with a Qwen3 decoder; "
                "at 448 × 448 one tile; <img>/</img> are not image tokens",
           **_TRANSFORMERS_DECODER),
    Family("EXAONE 4.5", "exaone4_5", "Exaone4_5_ForConditionalGeneration", "Exaone4_5_Processor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_exaone4_5", image_tokens=16, processed_size=(64, 64)),
           note="Qwen2.5-VL-style tower and layout (patch 14, 2 × 2 merge) with an EXAONE 4 decoder "
                "(sliding-window and global layers); runs at 448 × 448 (16 × 16)",
           **_TRANSFORMERS_DECODER),
    Family("Cohere Compass", "cohere_compass", "CohereCompassForConditionalGeneration", "CohereCompassProcessor",
           resolution=(448, 448), layout=geometry.qwen_layout,
           tiny=TinyModel("tiny_cohere_compass", image_tokens=16, processed_size=(64, 64)),
           note="Qwen3-VL-style tower (DeepStack) and layout with a Cohere decoder (sliding-window layers, M-RoPE); "
                "the wrapper scales the logits by logit_scale, which the engine applies where it unembeds; "
                "runs at 448 × 448",
           **_TRANSFORMERS_DECODER),
)}


def supported_architectures() -> str:
    """``"LLaVA-1.5 (llava), ..."``: the families, for error messages."""
    return ", ".join(f"{f.name} ({model_type})" for model_type, f in FAMILIES.items())


def family_of(config_or_model_type, *, source: str | None = None) -> Family:
    """The record of a config (anything with ``model_type``) or of a model_type string.

    A config of an unregistered model type with the standard layout gets a derived record
    (:func:`derived_family`; the engine checks it on the loaded model). Otherwise raises
    :class:`UnsupportedModel` naming the supported families and, where known, why the type is
    not supported; ``source`` (a folder or hub id) goes into that message."""
    model_type = getattr(config_or_model_type, "model_type", config_or_model_type)
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is not None:
        return family
    problem = None
    if not isinstance(config_or_model_type, str):
        family, problem = derived_family(config_or_model_type)
        if family is not None:
            return family
    what = f"{source} is a {model_type!r} model" if source else f"{model_type!r} is not a supported model type"
    why = f" ({problem})" if problem else ""
    raise UnsupportedModel(f"{what}{why}; hearlib supports {supported_architectures()}")


def derived_family(config) -> tuple[Family | None, str | None]:
    """A record for an unregistered model type whose layout is standard, or why there is none.

    Standard: transformers maps the type to an image-text-to-text class, the config has a
    ``text_config`` with layers and heads and an image token id, and hearlib.families.coverage records no
    reason that HeAr does not apply (encoder-decoder, cross-attention, token mixing outside
    attention, ...). The record assumes transformers' usual decoder paths
    (``model.language_model``, ``layers``, ``self_attn``, ``o_proj``, ``norm``, ``lm_head``);
    :class:`hearlib.method.engine.Engine` checks fast = literal and intact = unpatched on the loaded model
    before it runs (:meth:`hearlib.method.engine.Engine.check_derived`). It knows no image-token geometry:
    attribution works, image maps do not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    kind, reason = REASONS.get(model_type, (NOT_YET, ""))
    if kind != NOT_YET:
        return None, f"{kind}: {reason}"
    model_class = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(model_type)
    if model_class is None:
        return None, "transformers maps no image-text-to-text class to it"
    text_config = getattr(config, "text_config", None)
    if text_config is None or not getattr(text_config, "num_hidden_layers", None) \
            or not getattr(text_config, "num_attention_heads", None):
        return None, "its config has no text_config with num_hidden_layers and num_attention_heads"
    token_attribute = next((name for name in ("image_token_id", "image_token_index")
                            if isinstance(getattr(config, name, None), int)), None)
    if token_attribute is None:
        return None, "its config names no image token id (image_token_id / image_token_index)"
    return Family(f"{model_type} (derived)", model_type, model_class, "AutoProcessor", resolution=None,
                  layout=geometry.no_layout, tiny=None, derived=True,
                  note="not registered: derived from the standard layout and checked on load; no image maps",
                  **{**_TRANSFORMERS_DECODER, "image_token_id": token_attribute}), None
