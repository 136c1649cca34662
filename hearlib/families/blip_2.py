"""BLIP-2 (``blip-2``) and InstructBLIP (``instructblip``).

Layout: none on the image. A Q-Former's ``num_query_tokens`` (32) learned queries cross-attend to the
vision features and are projected into the language model's input, where the processor has put 32
``<image>`` tokens before the text (``Blip2Processor.__call__``: "image tokens ... at the beginning even
before BOS"); the model writes the query outputs over them (``masked_scatter``). The decoder reads
them through its ordinary causal self-attention, as LLaVA reads its image tokens, so HeAr applies to
those 32 positions; each query pools the whole image, so the layout names them as non-spatial
``query`` tokens. Only a decoder-only language model fits: BLIP-2 with OPT
(``language_model.model.decoder``, OPT's ``out_proj`` and ``final_layer_norm``), InstructBLIP with
Vicuna (Llama paths under ``language_model.model``). Flan-T5 checkpoints
(``use_decoder_only_language_model`` False) are encoder-decoders and do not resolve these paths.
InstructBLIP's Q-Former also reads the prompt (``qformer_input_ids``), so its image positions depend on
the prompt as well as the image.

Tiny model: a 64 px / patch 8 BLIP-2 vision tower (initializer_range 0.02, not the config's 1e-10), a
1-layer Q-Former of width 32 with 8 queries (initializer_range 0.5, so the queries tell images apart), an
OPT decoder (BLIP-2) or a Llama decoder (InstructBLIP, whose tiny Q-Former tokenizer is the decoder's);
8 ``<image>`` tokens before ``</s>`` (OPT's BOS, which the tokenizer prepends). The hub checkpoints
ship no chat template and ``Blip2Processor.__init__`` / ``InstructBlipProcessor.__init__`` drop any given
one, so the records carry the model cards' prompt ``Question: {p} Answer:`` as ``Family.chat_template``,
which the engine gives the processor; the processor itself puts the ``<image>`` tokens before the text.
"""
from __future__ import annotations

from hearlib.families.registry import DROP, TRANSFORMERS_DECODER, Family, TinySpec, Tokens, register

__all__ = ["QUERY_TEMPLATE", "query_layout"]

QUERY_TOKENS = 8


def query_layout(config, processor, sample, width, height):
    """No grid: every image position holds one Q-Former query, which pools the whole image."""
    return [], {"query": tuple(range(len(sample.image_positions)))}


QUERY_TEMPLATE = (
    "{% for message in messages %}{% for c in message['content'] %}{% if c['type'] == 'text' %}"
    "Question: {{ c['text'] }} {% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)

OPT_TOKENS = Tokens(("<s>", "<pad>", "</s>", "<unk>", "<image>"),
                    dict(bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
                    {}, prepend="</s>", extra_words=("Question", "Answer"))
LLAMA_TOKENS = Tokens(("<unk>", "<s>", "</s>", "<pad>", "<image>"),
                      dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
                      {}, prepend="<s>", extra_words=("Question", "Answer"))
QFORMER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
               cross_attention_frequency=1, vocab_size=512, initializer_range=0.5)
OPT_TEXT = dict(model_type="opt", word_embed_proj_dim=64, ffn_dim=128, num_key_value_heads=DROP, head_dim=DROP,
                rms_norm_eps=DROP)
# the vision config draws its weights at std 1e-10 (initializer_range), which would hide the image
VISION = dict(initializer_range=0.02)
BLIP_PIXELS = ("BlipImageProcessor", dict(size={"height": 64, "width": 64}))
LLAMA_DECODER = dict(TRANSFORMERS_DECODER, decoder="language_model.model", lm_head="language_model.lm_head")


def blip_spec(tokens: Tokens, text: dict, **overrides) -> TinySpec:
    return TinySpec(tokens=tokens, template=QUERY_TEMPLATE, image_tokens=QUERY_TOKENS, processed_size=(64, 64),
                    token_ids={"image_token_index": "<image>"}, text=text, vision=VISION,
                    config=dict(num_query_tokens=QUERY_TOKENS, qformer_config=QFORMER),
                    image_processor=BLIP_PIXELS, processor={"num_query_tokens": QUERY_TOKENS}, **overrides)


register(
    Family("BLIP-2", "blip-2", "Blip2ForConditionalGeneration", "Blip2Processor", resolution=(224, 224),
           layout=query_layout, tiny=blip_spec(OPT_TOKENS, OPT_TEXT), chat_template=QUERY_TEMPLATE,
           note="32 Q-Former query outputs written over 32 <image> tokens before the text; the OPT decoder "
                "reads them by self-attention (language_model.model.decoder, out_proj, final_layer_norm); "
                "Flan-T5 checkpoints are encoder-decoders and do not fit; no grid on the image",
           **dict(TRANSFORMERS_DECODER, decoder="language_model.model.decoder", output_projection="out_proj",
                  final_norm="final_layer_norm", lm_head="language_model.lm_head")),
    Family("InstructBLIP", "instructblip", "InstructBlipForConditionalGeneration", "InstructBlipProcessor",
           resolution=(224, 224), layout=query_layout, tiny=blip_spec(LLAMA_TOKENS, dict(model_type="llama")),
           chat_template=QUERY_TEMPLATE,
           note="32 Q-Former query outputs (the Q-Former also reads the prompt) over 32 <image> tokens before the "
                "text, read by the Vicuna/Llama decoder's self-attention; Flan-T5 checkpoints are encoder-decoders",
           **LLAMA_DECODER),
)
