"""The GOT-OCR2 lineage: PP-Chart2Table (GOT-OCR2's model class, PaddlePaddle's processor).

GOT-OCR 2.0 itself (``got_ocr2``) is refused (hearlib.families.refusals): GotOcr2Processor raises on the
nested image list (one list per text) the engine passes for a batch of reference images; its layout and
prompt are the ones here.

Layout: a SAM-style windowed ViT (1024 px / patch 16: 64 × 64 patches), a convolutional neck (1 × 1 then
3 × 3) and two stride-2 3 × 3 convolutions in the projector: ``(image_size/patch/4)²`` ``<imgpad>`` tokens
(16 × 16 = 256) row-major over the whole image; with ``crop_to_patches`` the tiles row-major and a
thumbnail last (as InternVL). The convolutions mix each token with its neighbours' patches (a 3 × 3 stencil
at each scale), so a token's cell is where its receptive field is centred, not all it sees; the image
tokens are still ordinary decoder positions. ``<img>``/``</img>`` are not image tokens.

Tiny model: the SAM-style tower 64 px / patch 1 (64 × 64 patches, every block in windows of 8) → 16 × 16 =
256 ``<imgpad>`` tokens, the real count; a Qwen2 decoder. PPChart2TableProcessor expands no token: the
template writes the 256 ``<imgpad>`` tokens itself, in the conversation :class:`transformers.GotOcr2Processor`
builds (its system query, ``<img>`` + image tokens + ``</img>``, the query, no newline after
``<|im_end|>``; GOT-OCR2's checkpoint has no chat template).
"""
from __future__ import annotations

from hearlib.families.geometry import pair, tiles_and_thumbnail
from hearlib.families.internvl import CHATML_ROLES
from hearlib.families.llava import CLIP_MEAN, CLIP_STD
from hearlib.families.registry import TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["got_ocr2_layout"]

CONVOLUTION_STRIDE = 4          # the projector's two stride-2 convolutions (GotOcr2MultiModalProjector)


def got_ocr2_layout(config, processor, sample, width, height):
    vision = config.vision_config
    rows, cols = (s // p // CONVOLUTION_STRIDE for s, p in zip(pair(vision.image_size), pair(vision.patch_size)))
    n_tiles = int(sample.inputs["pixel_values"].shape[0])
    return tiles_and_thumbnail(processor.image_processor, n_tiles, rows, cols, width, height, "GOT-OCR2"), {}


GOT_SYSTEM = "You should follow the instructions carefully and explain your answers in detail."


def got_template(image: str) -> str:
    """GotOcr2Processor's own conversation with ``image`` between ``<img>`` and ``</img>``."""
    return (
        "<|im_start|>system\n" + GOT_SYSTEM + "<|im_end|>"
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}<img>" + image + "</img>\n{% endif %}"
        "{% endfor %}"
        "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        "{% endif %}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


_TOKENS = Tokens(("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"),
                 CHATML_ROLES, {"image_token": "<imgpad>"})
_VISION = dict(patch_size=1, output_channels=32, window_size=8, global_attn_indexes=[], mlp_dim=64,
               initializer_range=0.02)
_ROPE = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
_PIXELS = dict(size={"height": 64, "width": 64}, image_mean=CLIP_MEAN, image_std=CLIP_STD)


register(
    Family("PP-Chart2Table", "pp_chart2table", "GotOcr2ForConditionalGeneration", "PPChart2TableProcessor",
           resolution=(1024, 1024), layout=got_ocr2_layout,
           tiny=TinySpec(tokens=_TOKENS, template=got_template("<imgpad>" * 256), image_tokens=256,
                         processed_size=(64, 64), token_ids={"image_token_id": "<imgpad>"}, text=_ROPE,
                         vision=_VISION, image_processor=("PPChart2TableImageProcessor", _PIXELS)),
           note="GOT-OCR2's model (GotOcr2ForConditionalGeneration) and layout: 16 × 16 = 256 <imgpad> tokens, "
                "each also seeing its neighbours' patches; PPChart2TableProcessor expands no token, the chat "
                "template writes all 256 (PaddlePaddle/PP-Chart2Table); runs at 1024 × 1024",
           **TRANSFORMERS_DECODER),
)
