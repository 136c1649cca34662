"""Florence-2 (``florence2``), an encoder-decoder: a DaViT vision tower and a BART language model.

Encoder: ``Florence2ForConditionalGeneration`` writes the projected image features over the
``<image>`` tokens that ``Florence2Processor`` puts first in the encoder's sequence
(``image_token × image_seq_length`` + ``<s>`` + prompt + ``</s>``), and the BART encoder mixes image and
prompt bidirectionally. Decoder: ``model.language_model.decoder`` (``BartDecoder``; post-LN, so its last
layer's ``final_layer_norm`` is the norm the unembedding reads, the record's ``final_norm``), whose layers
each hold a causal ``self_attn`` and an ``encoder_attn``: a ``BartAttention`` that reads keys and values
projected from the encoder's output (``key_value_states``) through ``ALL_ATTENTION_FUNCTIONS`` with
``layer_idx`` and the bidirectional mask of the encoder's ``attention_mask``. HeAr covers those
cross-attentions only (``Family.encoder_decoder``; docs/METHOD.md, "Encoder-decoder models"): N = decoder
layers × heads, the image tokens are the encoder positions that hold the image (a subset of the keys; the
prompt's encoder positions stay the sample's own), the text tokens are the decoder's positions
(``decoder_start_token_id`` then the forced ``<s>``), and the answer is read at the decoder's last one.

Layout: ``Florence2MultiModalProjector`` writes first the mean over the grid (its "spatial" pooling of one
frame), non-spatial, then the tower's last-stage grid row-major (its "temporal" pooling, the identity for one
frame): 1 + 24 × 24 = 577 = ``image_seq_length`` at 768 × 768 (strides 4·2·2·2 = 32).

Tiny model: a DaViT tower of two stages (patch 7 stride 4, patch 3 stride 2; widths 16, 32; window 4)
that brings a 64 px image to an 8 × 8 grid (65 image tokens with the mean), projected to 64; a BART of
2 encoder + 2 decoder layers, 4 heads of 16. Their weights are drawn wider than the configs' defaults (BART's
``init_std`` 0.2, the tower's ``initializer_range`` 0.5): at 0.02 the decoder's reads of the image barely move
the answer. Prompt: the processor's own, the prompt text as given (``FLORENCE2_TEMPLATE`` renders the text
only; the processor adds ``<image>``s, ``<s>`` and ``</s>``).
"""
from __future__ import annotations

from hearlib.families.geometry import Panel, regular_grid
from hearlib.families.registry import DROP, Family, TinySpec, Tokens, register

__all__ = ["florence2_layout", "force_bos", "FLORENCE2_TEMPLATE", "FLORENCE2_TOKENS"]


def florence2_layout(config, processor, sample, width, height):
    """The mean token first, then the last stage's grid row-major."""
    n_image = sample.n_image
    side = int(round((n_image - 1) ** 0.5))
    if side * side + 1 != n_image:
        raise ValueError(f"Florence-2: {n_image} image tokens are not a square grid and its mean token")
    return [Panel("image", regular_grid(1, side, side, side), (0, 0, width, height))], {"mean": (0,)}


FLORENCE2_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}"
)
FLORENCE2_TOKENS = Tokens(("<s>", "<pad>", "</s>", "<unk>", "<image>"),
                          dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
                          {"image_token": "<image>"})
_BART = dict(model_type="bart", encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, d_model=64,
             hidden_size=DROP, num_hidden_layers=DROP, num_attention_heads=DROP, intermediate_size=DROP,
             num_key_value_heads=DROP, head_dim=DROP, rms_norm_eps=DROP, decoder_start_token_id=2,
             forced_bos_token_id=0, forced_eos_token_id=2, init_std=0.2)
_DAVIT = dict(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
              patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[2, 2], num_groups=[2, 2], window_size=4,
              projection_dim=64, max_position_embeddings=16, drop_path_rate=0.0, mlp_ratio=2.0,
              initializer_range=0.5)


def force_bos(model) -> None:
    """Give the tiny model the hub checkpoints' ``forced_bos_token_id`` (``<s>`` after the decoder start), which
    ``GenerationConfig.from_model_config`` does not carry over from the text config."""
    model.generation_config.forced_bos_token_id = model.config.text_config.bos_token_id


_PIXELS = ("CLIPImageProcessor", dict(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                      do_center_crop=False, image_seq_length=65))


register(
    Family("Florence-2", "florence2", "Florence2ForConditionalGeneration", "Florence2Processor",
           resolution=(768, 768), layout=florence2_layout, chat_template=FLORENCE2_TEMPLATE,
           tiny=TinySpec(tokens=FLORENCE2_TOKENS, template=FLORENCE2_TEMPLATE, image_tokens=65,
                         processed_size=(64, 64), token_ids={"image_token_id": "<image>"}, text=_BART,
                         vision=_DAVIT, image_processor=_PIXELS, weights=force_bos),
           note="an encoder-decoder (BART): HeAr's heads are the decoder's cross-attention (encoder_attn) heads, "
                "its image tokens the encoder positions that hold the image (577 = a mean token + 24 × 24 at "
                "768 × 768), its text tokens the decoder's positions (decoder start, <s>); the encoder (where image "
                "and prompt mix) and the decoder's self-attention are not ablated; literal path",
           decoder="model.language_model.decoder", layers="layers", attention="encoder_attn",
           output_projection="out_proj", final_norm="layers.-1.final_layer_norm", lm_head="lm_head",
           text_config="text_config", image_token_id="image_token_id", encoder_decoder=True),
)
