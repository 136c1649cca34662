"""HeAr on an encoder-decoder (docs/METHOD.md, "Encoder-decoder models"), on the tiny Florence-2: a DaViT tower
whose 65 image features (the mean of an 8 × 8 grid, then the grid) are written over the first 65 positions of the BART
encoder's input (``<image>`` × 65, ``<s>``, the prompt, ``</s>``), and a 2-layer BART decoder whose layers each
cross-attend (``encoder_attn``) to every encoder position.

HeAr's heads are the decoder's cross-attention heads (N = 2 × 4), its image tokens the 65 encoder positions
that hold the image (the prompt's encoder positions are keys too and stay the sample's own), its text tokens
the decoder's positions (the decoder start token and the forced ``<s>``: the input from which the decoder
emits the answer's first token). Query t of head n reads the mean key and value at image key j unless
x_n · u_t · v_j = 1. The reference is written by hand: the cross-attention module's projections from its weights,
then test_oracle.py's ``cross_attention_by_hand`` (one softmax per head over every encoder key; conftest.py
``hand_written_cross_attention``), then its output projection; the means are ``cross_means_by_hand``'s: its
``k_proj`` / ``v_proj`` outputs at the image positions in the reference images' forwards of the model as shipped
(eager attention), averaged. No hearlib code is involved. What holds for every kind (covered layers, all heads
intact, own-image means, the fast method's fallback) is in test_model_kinds.py."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from hearlib.method.generation_hook import intervene
from hearlib.prompts import PAPER_PROMPT

IMAGE_KEYS = 1 + 8 * 8           # the tiny Florence-2's image tokens: the mean of the 8 × 8 grid, then the grid
DECODER_START, BOS = 2, 0        # its generation config: decoder_start_token_id, forced_bos_token_id
HEADS = 4
RESOLUTION = (768, 768)          # Florence-2's input size, to which hearlib resizes every image (bicubic)


@pytest.fixture(scope="module")
def setup(kind_setup, tiny_model_dir):
    """The encoder-decoder's engine, eager reference, images, sample and means (conftest.py ``kind_setup``),
    with the tiny Florence-2's processor between the reference and the images."""
    engine, reference, images, sample, means = kind_setup("encoder-decoder")
    processor = AutoProcessor.from_pretrained(tiny_model_dir("florence2"))
    return engine, reference, processor, images, sample, means


def model_inputs(processor, image) -> dict:
    """The processor's encoder input for the paper prompt, and the decoder's two start tokens."""
    image = image.resize(RESOLUTION, Image.BICUBIC)
    inputs = dict(processor(images=image, text=PAPER_PROMPT, return_tensors="pt"))
    inputs["decoder_input_ids"] = torch.tensor([[DECODER_START, BOS]])
    return inputs


def cross_attention_of(model) -> list:
    """The decoder layers' cross-attention modules (``encoder_attn``), in order."""
    return [layer.encoder_attn for layer in model.model.language_model.decoder.layers]


@pytest.fixture(scope="module")
def reference_means(setup, hand_written_cross_attention):
    """Per decoder layer, the mean keys and values [H, 65, D] of its cross-attention at the encoder's image
    positions, from the ``k_proj`` / ``v_proj`` outputs of each reference image's forward of the model as shipped."""
    _, reference, processor, images, _, _ = setup
    inputs = [model_inputs(processor, image) for image in images[1:]]
    for one in inputs:
        assert bool((one["input_ids"][0, :IMAGE_KEYS] == reference.config.image_token_id).all())
    return hand_written_cross_attention.cross_means_by_hand(reference, cross_attention_of(reference), inputs,
                                                            image_keys=slice(0, IMAGE_KEYS))


def hooked_forward(model, inputs, by_hand, reads: dict):
    """The model's last-position logits with decoder layer l's cross-attention, for each l in ``reads``, rewritten
    from its weights: q/k/v projections, ``by_hand`` (``cross_attention_by_hand``) with ``reads[l]`` = (keep
    [H, Q, 65], mean_k, mean_v, an additive mask [1, H, Q, K] or None), the output projection."""
    assert bool(inputs["attention_mask"].all())             # no padding: every query may read every key

    def by_head(states):
        return states.view(states.shape[0], states.shape[1], HEADS, -1).transpose(1, 2)

    def hook_of(layer):
        keep, mean_k, mean_v, mask = reads[layer]

        def hook(module, args, kwargs, output):
            hidden, states = args[0], kwargs["key_value_states"]
            out, _ = by_hand(by_head(module.q_proj(hidden)), by_head(module.k_proj(states)),
                             by_head(module.v_proj(states)), mask, module.scaling, torch.arange(IMAGE_KEYS),
                             keep, mean_k, mean_v)
            return module.out_proj(out.reshape(hidden.shape[0], hidden.shape[1], -1)), None
        return hook

    modules = cross_attention_of(model)
    with contextlib.ExitStack() as hooks, torch.no_grad():           # each hook removed on the way out
        for layer in reads:
            hooks.enter_context(modules[layer].register_forward_hook(hook_of(layer), with_kwargs=True))
        return model(**inputs, use_cache=False).logits[0, -1]


def test_the_engine_covers_the_decoder_s_cross_attention_over_the_encoder_s_image_positions(setup):
    engine, reference, processor, images, sample, _ = setup
    assert engine.family.encoder_decoder and engine.family.cross_attention
    language_model = engine.model.model.language_model
    assert engine.family.attention_modules(engine.model)[1] is language_model.decoder.layers[1].encoder_attn
    others = [layer.self_attn for layer in (*language_model.encoder.layers, *language_model.decoder.layers)]
    assert [m.hear_layer for m in others] == [None] * 4          # the encoder and decoder self-attention: never
    assert len(reference.model.language_model.decoder.layers) == 2
    # the sample: the processor's encoder input, the image at its first 65 positions, the decoder's two start tokens
    expected = model_inputs(processor, images[0])
    for name in ("input_ids", "attention_mask", "decoder_input_ids", "pixel_values"):
        assert torch.equal(sample.inputs[name].cpu(), expected[name])
    assert torch.equal(sample.image_positions.cpu(), torch.arange(IMAGE_KEYS))
    assert (sample.text_start, sample.n_text, sample.n_image) == (0, 2, IMAGE_KEYS)
    assert sample.text_ids == [DECODER_START, BOS]          # what Figs. 4A/15 label the text tokens with
    assert sample.answer_id == processor.tokenizer.convert_tokens_to_ids("dog")
    record = engine.record(sample)
    assert record.text_to_image.shape == (2, HEADS, 2, IMAGE_KEYS)
    # the prompt's encoder positions are keys too: the attention on the image keys falls short of 1
    assert (record.image_attention < 1 - 1e-3).all() and (record.image_attention > 0).all()


def test_generate_starts_the_decoder_as_the_sample_does(setup):
    engine, reference, processor, images, _, _ = setup
    inputs = {k: v for k, v in model_inputs(processor, images[0]).items() if k != "decoder_input_ids"}
    with torch.no_grad():
        sequence = reference.generate(**inputs, max_new_tokens=3)[0]
    assert sequence[:2].tolist() == [DECODER_START, BOS]
    assert engine.family.decoder_prompt_of(engine.model) == [DECODER_START, BOS]


def test_the_means_are_the_encoder_image_positions_keys_and_values_averaged_by_hand(setup, reference_means):
    means = setup[-1]
    assert means.k.shape == (2, HEADS, IMAGE_KEYS, 16)
    for layer, (mean_k, mean_v) in enumerate(reference_means):
        mean_k, mean_v = mean_k.float(), mean_v.float()
        # float32 rounding relative to the keys' size (~4): the engine's encoder runs SDPA, the reference eager
        assert (means.k[layer].float() - mean_k).abs().max() <= 1e-5 * mean_k.abs().max()
        assert (means.v[layer].float() - mean_v).abs().max() <= 1e-5 * mean_v.abs().max()


@pytest.mark.parametrize("ablated_head, ablated_text, ablated_image", [
    ((0, 1), [], []),                          # one head: every decoder query, every image key
    ((1, 3), [], []),
    (None, [1], []),                           # the last decoder position, in every head, every image key
    (None, [], [0, 9, 30, 64]),                # some image keys (the mean token included), every head and query
    ((1, 0), [0], list(range(20, 50))),        # all three at once: x_n · u_t · v_j = 0 wherever one factor is
])
def test_ablated_reads_are_the_hand_written_cross_attention_over_the_mean_image_keys(
        setup, reference_means, hand_written_cross_attention, literal, adjusted, ablated_head, ablated_text,
        ablated_image):
    """Query t of head n reads the mean key and value at image key j where x_n · u_t · v_j = 0, and its own
    at every other key: the image keys it keeps and the prompt's encoder positions."""
    engine, reference, _, _, sample, means = setup
    heads = np.ones((1, engine.n_total_heads), bool)
    if ablated_head is not None:
        heads[0, ablated_head[0] * HEADS + ablated_head[1]] = False
    text, image = np.ones((1, sample.n_text), bool), np.ones((1, sample.n_image), bool)
    text[0, ablated_text], image[0, ablated_image] = False, False
    keep_of = hand_written_cross_attention.keep_of
    reads = {layer: (keep_of(heads[0, layer * HEADS:(layer + 1) * HEADS], text[0], image[0]), mean_k, mean_v, None)
             for layer, (mean_k, mean_v) in enumerate(reference_means)}
    expected = hooked_forward(reference, sample.inputs, hand_written_cross_attention.cross_attention_by_hand, reads)
    got = literal(engine, sample, means, heads, text, image)[0]
    assert abs(got - adjusted(expected, sample.answer_id)) <= 1e-5
    with torch.no_grad():
        intact = adjusted(reference(**sample.inputs, use_cache=False).logits[0, -1], sample.answer_id)
    assert abs(got - intact) > 1e-5                                   # the ablation moved the answer


def generated_first_answer_logits(engine, processor, image, **intervention) -> torch.Tensor:
    """The logits from which ``generate`` picks the answer's first token (its third step: after the decoder
    start and the forced ``<s>``) under ``intervene``."""
    inputs = {k: v for k, v in model_inputs(processor, image).items() if k != "decoder_input_ids"}
    with torch.no_grad(), intervene(engine, **intervention):
        out = engine.model.generate(**inputs, max_new_tokens=3, output_logits=True, return_dict_in_generate=True)
    assert out.sequences[0, :2].tolist() == [DECODER_START, BOS]
    return out.logits[1][0]


@pytest.mark.parametrize("mode", ["ablate", "keep-only"])
def test_generation_with_a_head_set_ablated_is_the_hand_written_forward(setup, reference_means,
                                                                         hand_written_cross_attention, literal,
                                                                         adjusted, mode):
    engine, reference, processor, images, sample, means = setup
    chosen = [(0, 2), (1, 1)]
    got = generated_first_answer_logits(engine, processor, images[0], heads=chosen, mode=mode, means=means)
    every_query, every_image_key = np.ones(sample.n_text, bool), np.ones(IMAGE_KEYS, bool)
    reads = {}
    for layer, (mean_k, mean_v) in enumerate(reference_means):
        kept = [((layer, head) in chosen) != (mode == "ablate") for head in range(HEADS)]
        keep = hand_written_cross_attention.keep_of(kept, every_query, every_image_key)
        reads[layer] = (keep, mean_k, mean_v, None)
    expected = hooked_forward(reference, sample.inputs, hand_written_cross_attention.cross_attention_by_hand, reads)
    assert (got - expected).abs().max() <= 1e-5
    x = np.ones(engine.n_total_heads, bool)
    x[[l * HEADS + h for l, h in chosen]] = False
    x = x if mode == "ablate" else ~x
    assert abs(adjusted(got, sample.answer_id) - literal(engine, sample, means, x[None])[0]) <= 1e-5


def test_generation_with_a_head_s_image_reads_scaled_to_zero_reads_the_prompt_positions_only(
        setup, reference_means, hand_written_cross_attention):
    engine, reference, processor, images, sample, _ = setup
    got = generated_first_answer_logits(engine, processor, images[0], heads=["1.2"], mode="scale", scale=0.0)
    n_keys = sample.inputs["input_ids"].shape[-1]
    blocked = torch.zeros(1, HEADS, sample.n_text, n_keys)              # head 2's image keys removed, its own kept
    blocked[0, 2, :, :IMAGE_KEYS] = float("-inf")
    keep = torch.ones(HEADS, sample.n_text, IMAGE_KEYS, dtype=torch.bool)
    reads = {1: (keep, *reference_means[1], blocked)}
    expected = hooked_forward(reference, sample.inputs, hand_written_cross_attention.cross_attention_by_hand, reads)
    assert (got - expected).abs().max() <= 1e-5
    unscaled = generated_first_answer_logits(engine, processor, images[0], heads=["1.2"], mode="scale", scale=1.0)
    with torch.no_grad():
        assert (unscaled - reference(**sample.inputs, use_cache=False).logits[0, -1]).abs().max() <= 1e-5
