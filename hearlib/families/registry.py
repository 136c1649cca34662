"""The model families hearlib supports: one :class:`Family` record per ``config.model_type``.

A record says where hearlib finds what it touches in a transformers model of the family
(the text decoder, each layer's self-attention and its output projection, the final norm,
the unembedding, the image token id), the input size the family runs at, the function that
places its image tokens on the image (see :mod:`hearlib.families.geometry`), and the
:class:`TinySpec` from which :mod:`hearlib.families.tiny` derives a tiny random-weight model of it.
The records live in one file per model lineage (``hearlib/families/llava.py``, ``qwen2_vl.py``, ...),
each calling :func:`register`; importing :mod:`hearlib.families` imports them all.
:mod:`hearlib.method.engine`, :mod:`hearlib.method.loading`, :mod:`hearlib.families.geometry` and
:mod:`hearlib.families.tiny` read these records and nothing else; docs/ADDING_A_MODEL_FAMILY.md
walks through adding one.

Paths are attribute paths (``"model.language_model"``), each relative to the object its
field names.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from hearlib.families import geometry
from hearlib.errors import UnsupportedModel
from hearlib.families.refusals import NOT_YET, REASONS

__all__ = ["Family", "Tokens", "TinySpec", "DROP", "FAMILIES", "register", "family_of", "supported_architectures",
           "resolve_path"]


class _Drop:
    """An override value that removes a key of :data:`hearlib.families.tiny.SIZES` (not passed at all)."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()


@dataclass(frozen=True)
class Tokens:
    """The special tokens of a tiny model's word-level tokenizer (the shared test words follow them).

    ``specials``: in id order from 0; ``roles``: ``bos_token``/``eos_token``/``unk_token``/``pad_token``;
    ``named``: the tokenizer's extra special tokens by attribute (``image_token``, ...); ``prepend``:
    the token the tokenizer puts before every text (None: none); ``extra_words``: words the
    family's template needs beyond the shared vocabulary (appended last, so other ids stay)."""

    specials: tuple[str, ...]
    roles: dict
    named: dict
    prepend: str | None = None
    extra_words: tuple[str, ...] = ()
    # every word also an added single-word token: for a model type whose AutoTokenizer rebuilds its own BPE
    # from the saved vocabulary, ignoring the saved tokenizer class (Qwen3.5's Qwen3_5Tokenizer), so that
    # the word-level tokenizer survives the round trip
    words_as_added_tokens: bool = False
    # SentencePiece's word-start mark that the tokenizer puts before every stretch of text, and the specials
    # kept as ordinary words so that a stretch of them starts with it too: Fuyu's processor drops the first
    # token of its tokenized image placeholders (the '▁' its hub tokenizer puts there)
    lead: str | None = None
    plain: tuple[str, ...] = ()


@dataclass(frozen=True)
class TinySpec:
    """What a tiny model of the family needs beyond transformers' own config class.

    :func:`hearlib.families.tiny.tiny_parts` starts from ``AutoConfig.for_model(model_type)``'s
    sub-config classes, shrinks them by the one table :data:`hearlib.families.tiny.SIZES` (each size
    key the class has; every text key), then applies ``text`` / ``vision`` / ``config`` (the text,
    vision and top-level overrides: a decoder ``model_type`` other than the default, sliding windows,
    soft-caps, M-RoPE sections...; :data:`DROP` leaves a size key out; a ``config`` value may be a function
    of the tokenizer: Emu3's ``vocabulary_map``) and ``token_ids`` (config attribute -> token, or list of tokens).
    The processor is ``Family.processor_class`` over ``image_processor`` (class name, settings),
    ``video_processor`` and ``feature_extractor`` (same, or None: an audio model's processor takes one)
    and the tokenizer of ``tokens`` with ``template``
    (a string, or a function returning one), plus ``processor`` settings. ``image_tokens``: image
    tokens one square image of any size gives; ``processed_size``: the (w, h) the image processor
    brings a square input to."""

    tokens: Tokens
    template: str | Callable[[], str]
    image_tokens: int
    processed_size: tuple[int, int]
    image_processor: tuple[str, dict]
    token_ids: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    video_processor: tuple[str, dict] | None = None
    processor: dict = field(default_factory=dict)
    feature_extractor: tuple[str, dict] | None = None
    # applied to the freshly initialised model before it is saved: a scalar gate transformers initialises to
    # zero (Mllama's tanh gates of the cross-attention layers) would cut the image off the decoder
    weights: Callable | None = None


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
    layout: Callable                 # (config, processor, sample, width, height) -> (panels, non_spatial)
    tiny: TinySpec | None            # the tiny model for tests (None: a derived record)
    note: str                        # what is particular about the family
    derived: bool = False            # made by derived_family(), not registered: checked on load
    logit_scale: Callable | None = None  # model -> the factor its wrapper multiplies the logits by, where the
                                         # wrapper has no ``logit_scale`` attribute (None: read the attribute)
    final_softcap: Callable | None = None  # model -> the soft-cap its wrapper applies to the final logits, where
                                           # that depends on the release (None: the text config's, if any)
    requires: tuple[str, str] | None = None  # (the oldest transformers release it runs on, why not an older one);
                                             # None: every release hearlib supports (pyproject.toml)
    softmax_layer: Callable | None = None  # decoder layer -> whether it is a softmax-attention layer, for a
                                           # hybrid decoder (linear attention, convolutions, state-space layers
                                           # between); HeAr covers those only. None: every layer
    cross_attention_keys: Callable | None = None  # (model config, processor outputs) -> the number of keys a
                                                  # cross-attention layer reads (the image's, every tile's):
                                                  # the covered layers (softmax_layer) are cross-attention
                                                  # layers and these keys are the image tokens (Mllama).
                                                  # None: the image is read at image-token positions
    chat_template: str | None = None  # the prompt format for a processor that keeps no chat template (BLIP-2's
                                      # processors drop it in __init__); the engine gives it to such a processor
    means_one_image_per_forward: bool = False  # the means run one image per forward: a batched forward would
                                               # change a row (HunYuan-VL's M-RoPE counts images across the batch)
    encoder_decoder: bool = False  # the covered layers are a decoder's cross-attention over an encoder whose
                                   # image-token positions are HeAr's image keys (a subset of the keys); the text
                                   # tokens are the decoder's positions (Florence-2; docs/METHOD.md,
                                   # "Encoder-decoder models")
    decoder_position_inputs: tuple[str, ...] = ()  # decoder keyword inputs besides inputs_embeds with one row per
                                                   # position, which the fast path passes at the text positions
                                                   # (Gemma 3n's per_layer_inputs: each token's per-layer embedding)
    fast_groups: bool = True  # the fast path may run a layer once per group of masks that agree on the heads so far;
                              # False where a layer's inputs do not follow the mask rows (Gemma 3n: AltUp stacks its
                              # streams before the batch, and kv-shared layers read an earlier layer's keys/values)
    layer_residual: Callable | None = None  # (model config, a decoder layer's output tensor) -> its residual stream
                                            # [B, T, d]; None: the output itself (Gemma 3n's layers return AltUp's
                                            # streams [altup_num_inputs, B, T, d], of which the active one)

    # -- resolving the paths on a model ----------------------------------------------------
    def decoder_of(self, model):
        return resolve_path(model, self.decoder, self.name)

    def layers_of(self, model) -> list:
        return list(resolve_path(self.decoder_of(model), self.layers, self.name))

    @property
    def hybrid(self) -> bool:
        """Whether HeAr covers some of the decoder's token mixers only: a hybrid decoder's softmax-attention layers
        (linear attention, convolutions... between), a cross-attention model's cross-attention layers, an
        encoder-decoder's cross-attentions (not the decoder's self-attention)."""
        return self.softmax_layer is not None or self.encoder_decoder

    @property
    def cross_attention(self) -> bool:
        """Whether the covered layers read the image by cross-attention (docs/METHOD.md, "Cross-attention models"
        and "Encoder-decoder models")."""
        return self.cross_attention_keys is not None or self.encoder_decoder

    def decoder_prompt_of(self, model) -> list[int]:
        """An encoder-decoder's decoder input before the answer's first token, as ``generate`` starts it: the
        decoder start token, then the forced BOS where the generation config forces one."""
        generation = getattr(model, "generation_config", None)
        start = getattr(generation, "decoder_start_token_id", None)
        if start is None:
            start = getattr(self.text_config_of(model.config), "decoder_start_token_id", None)
        if start is None:
            raise UnsupportedModel(f"{self.name}: neither the generation config nor the text config names a "
                                   "decoder_start_token_id")
        forced = getattr(generation, "forced_bos_token_id", None)
        return [int(start)] + ([int(forced)] if forced is not None else [])

    def covered_layers(self, model) -> list[int]:
        """The decoder layers HeAr's heads lie in: every layer, or a hybrid decoder's softmax-attention ones."""
        layers = self.layers_of(model)
        return [i for i, layer in enumerate(layers) if self.softmax_layer is None or self.softmax_layer(layer)]

    def attention_modules(self, model) -> list:
        """The self-attention module of each covered decoder layer (:meth:`covered_layers`), in layer order."""
        layers = self.layers_of(model)
        return [resolve_path(layers[i], self.attention, self.name) for i in self.covered_layers(model)]

    def give_chat_template(self, processor):
        """``processor``, given the family's :attr:`chat_template` where it has none of its own."""
        if self.chat_template is not None and getattr(processor, "chat_template", None) is None:
            processor.chat_template = self.chat_template
        return processor

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

    def release_problem(self) -> str | None:
        """Why the installed transformers cannot run this family (None: it can)."""
        if self.requires is None:
            return None
        import transformers
        from packaging.version import Version

        oldest, why = self.requires
        if Version(transformers.__version__) < Version(oldest):
            return f"{self.name} needs transformers >= {oldest} ({why}); this is {transformers.__version__}"
        return None

    def final_softcap_of(self, model) -> float | None:
        """The soft-cap the model's wrapper applies to its final logits (None: none), which hearlib applies
        too wherever it unembeds itself."""
        if self.final_softcap is not None:
            return self.final_softcap(model)
        return getattr(self.text_config_of(model.config), "final_logit_softcapping", None)

    def logit_scale_of(self, model) -> float | None:
        """The factor the model's wrapper multiplies its logits by (None: it does not), which hearlib
        applies too wherever it unembeds itself (the fast path, the logit lens)."""
        if self.logit_scale is not None:
            return self.logit_scale(model)
        return getattr(model, "logit_scale", None)        # Cohere Compass: ``logits * self.logit_scale``


def _step(obj, name: str):
    """``obj.name``, or ``obj[int(name)]`` for an integer step into a list (``-1``: the last)."""
    if name.lstrip("-").isdigit() and hasattr(obj, "__getitem__"):
        try:
            return obj[int(name)]
        except IndexError:
            raise AttributeError(name) from None
    return getattr(obj, name)


def resolve_path(obj, path: str, family: str = ""):
    """``obj.a.b`` for ``path="a.b"`` (``"layers.-1"``: the last of ``obj.layers``); UnsupportedModel naming the
    missing step if absent."""
    try:
        return functools.reduce(_step, path.split("."), obj)
    except AttributeError:
        raise UnsupportedModel(f"{family or type(obj).__name__}: {type(obj).__name__} has no {path!r}; "
                               "the transformers version may lay this family out differently") from None


# The decoder layout every supported family shares in transformers 5 (Llama / Qwen2 decoders
# under a *ForConditionalGeneration wrapper).
TRANSFORMERS_DECODER = dict(decoder="model.language_model", layers="layers", attention="self_attn",
                            output_projection="o_proj", final_norm="norm", lm_head="lm_head",
                            text_config="text_config", image_token_id="image_token_id")

# model_type -> record, filled by the lineage files (hearlib/families/<lineage>.py) through register()
FAMILIES: dict[str, Family] = {}


def register(*families: Family) -> None:
    """Add records to :data:`FAMILIES`; a model type registered twice is an error."""
    for family in families:
        if family.model_type in FAMILIES:
            raise ValueError(f"{family.model_type!r} is registered twice")
        FAMILIES[family.model_type] = family


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
        problem = family.release_problem()
        if problem:
            raise UnsupportedModel(problem)
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
    ``text_config`` with layers and heads and an image token id, and hearlib.paper.coverage records no
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
                  **{**TRANSFORMERS_DECODER, "image_token_id": token_attribute}), None
