"""Interventions on a head set during ``model.generate`` (:mod:`hearlib.method.generation_hook`), on a tiny
random-weight model of every registered family.

The reference is the engine's literal ablation (:class:`~hearlib.method.attention.LiteralPlan`, one
full-sequence forward): the first generated token's logits under ``ablate`` are
``engine.logits(..., method="literal")``'s for the same mask, and each later token's are the
literal ablation of the prompt plus the tokens generated so far (text queries include them), so the
key/value cache path (one query at a time, sliding-window caches) is checked too. The model must be
bit-identical after the block, also when generation raises."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from hearlib.errors import MeansMismatch, UserError
from hearlib.families.tiny import FAMILIES
from hearlib.method.attention import _ACTIVE_PLAN, LiteralPlan, ablation
from hearlib.method.generation_hook import ScalePlan, _GenerationPlan, head_set, intervene
from hearlib.method.loading import load_engine
from hearlib.method.means import MeanKV, compute_means

TOLERANCE = 1e-5        # measured: first step 0.0 (bit-equal), later steps <= 3.3e-7 on every family
STEPS = 3


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(request.param))
    images = random_images(5, seed=1)
    means = compute_means(engine, images[1:], progress=False)
    sample = engine.prepare(images[0], answer="dog")
    member = np.flatnonzero(np.random.default_rng(3).random(engine.n_total_heads) > 0.5)
    return engine, means, sample, member


@torch.no_grad()
def generate(engine, sample, steps=STEPS, **kwargs):
    """Greedy ``generate`` of exactly ``steps`` tokens: (token ids [1, S + steps], raw logits per step)."""
    out = engine.model.generate(**sample.inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                output_logits=True, return_dict_in_generate=True, **kwargs)
    return out.sequences, [step[0].double() for step in out.logits]


def extended_inputs(engine, sample, sequence):
    """The sample's inputs for ``sequence`` (the prompt plus generated tokens) in one forward: the
    per-token inputs grow with the generated tokens as text (PaliGemma's are suffix tokens, type 1;
    Mllama's ``cross_attention_mask`` [B, S, images, tiles] repeats its last row, as its
    ``_update_model_kwargs_for_generation`` grows it during ``generate``; an encoder-decoder's sequence is its
    decoder's input, the encoder's stays)."""
    grown = sequence.shape[1] - sample.seq_len
    inputs = {}
    for name, value in sample.inputs.items():
        if name == ("decoder_input_ids" if engine.family.encoder_decoder else "input_ids"):
            value = sequence
        elif name == "cross_attention_mask" and value.shape[1] == sample.seq_len:
            value = torch.cat([value, value[:, -1:].expand(-1, grown, *value.shape[2:])], dim=1)
        elif torch.is_tensor(value) and value.ndim == 2 and value.shape[1] == sample.seq_len \
                and not value.is_floating_point():
            fill = 1 if name == "attention_mask" or (name == "token_type_ids"
                                                     and engine.family.model_type == "paligemma") else 0
            value = torch.cat([value, torch.full((1, grown), fill, dtype=value.dtype)], dim=1)
        inputs[name] = value
    return inputs


@torch.no_grad()
def literal_logits(engine, sample, means, intact, sequence=None):
    """Raw logits at the last position of one full-sequence forward under the literal ablation."""
    inputs = sample.inputs if sequence is None else extended_inputs(engine, sample, sequence)
    heads = torch.as_tensor(intact[None])
    with ablation(LiteralPlan(sample.text_start, sample.image_positions, means, heads, None, None)):
        return engine.model(**inputs, use_cache=False).logits[0, -1].double()


def adjusted(logits, sample) -> float:
    return float(logits[sample.answer_id] - logits.mean())


def scale_refused(engine) -> bool:
    """A cross-attention model (Mllama) refuses ``scale`` by design: every key of its cross-attention layers is
    an image key, so renormalising a head's attention over them is a no-op (generation_hook's docstring;
    also tests/method/test_cross_attention.py). There the scale checks assert the refusal instead. An
    encoder-decoder's image keys are some of its cross-attention keys: scale applies."""
    if not engine.family.cross_attention or engine.family.encoder_decoder:
        return False
    hooks = len(engine.model._forward_pre_hooks)
    with pytest.raises(UserError, match="cross-attention"), engine.intervene([0], mode="scale", scale=0.5):
        pass
    assert _ACTIVE_PLAN.get() is None and len(engine.model._forward_pre_hooks) == hooks
    return True


def model_state(engine):
    return {name: tensor.detach().clone() for name, tensor in engine.model.state_dict().items()}


@torch.no_grad()
def plain_logits(engine, sample):
    return engine.model(**sample.inputs, use_cache=False).logits[0].clone()


def test_ablate_during_generation_is_the_literal_ablation(setup):
    """Step 1 equals ``engine.logits(method="literal")`` for the same mask; every later step equals
    the literal ablation of the longer sequence; and the mask moves the logit far beyond the tolerance."""
    engine, means, sample, member = setup
    intact = np.ones(engine.n_total_heads, bool)
    intact[member] = False
    with engine.intervene([(n // engine.n_heads, n % engine.n_heads) for n in member], means=means):
        sequence, steps = generate(engine, sample)
    expected = engine.logits(sample, means, intact[None], method="literal")[0]
    first = abs(adjusted(steps[0], sample) - expected)
    assert first <= TOLERANCE, (engine.family.model_type, first)
    assert (steps[0] - literal_logits(engine, sample, means, intact)).abs().max() <= TOLERANCE
    for k in range(1, STEPS):
        reference = literal_logits(engine, sample, means, intact, sequence[:, :sample.seq_len + k])
        assert (steps[k] - reference).abs().max() <= TOLERANCE, (engine.family.model_type, k)
    unablated = literal_logits(engine, sample, means, np.ones(engine.n_total_heads, bool))
    moved = 100 * TOLERANCE * (engine.family.logit_scale_of(engine.model) or 1.0)     # logits as the wrapper scales them
    assert (steps[0] - unablated).abs().max() > moved, "the head set must move the logits"


def test_keep_only_ablates_every_head_but_the_set(setup):
    engine, means, sample, member = setup
    with engine.intervene(member.tolist(), mode="keep-only", means=means):
        _, steps = generate(engine, sample, steps=1)
    intact = np.zeros(engine.n_total_heads, bool)
    intact[member] = True
    expected = engine.logits(sample, means, intact[None], method="literal")[0]
    assert abs(adjusted(steps[0], sample) - expected) <= TOLERANCE


def test_scale_one_and_keep_only_of_all_heads_are_no_intervention(setup):
    engine, means, sample, member = setup
    sequence, steps = generate(engine, sample, steps=2)
    everything = range(engine.n_total_heads)
    cases = [("scale", member.tolist(), 1.0), ("keep-only", everything, 1.0), ("ablate", [], 1.0)]
    if scale_refused(engine):
        cases = cases[1:]
    for mode, heads, scale in cases:
        with engine.intervene(heads, mode=mode, scale=scale, means=means):
            got_sequence, got = generate(engine, sample, steps=2)
        assert torch.equal(got_sequence, sequence), mode
        difference = max(float((a - b).abs().max()) for a, b in zip(got, steps))
        assert difference <= TOLERANCE, (engine.family.model_type, mode, difference)


def test_the_model_is_bit_identical_after_the_block_and_after_an_exception(setup):
    engine, means, sample, member = setup
    state, before = model_state(engine), plain_logits(engine, sample)
    hooks = len(engine.model._forward_pre_hooks)

    class Stop(Exception):
        pass

    class FailAfterSecondStep(StoppingCriteria):
        """Raises once the second token is generated (after the first cached forward). A stopping criterion,
        not a logits processor: Janus's ``generate`` takes ``logits_processor`` for image generation only
        and drops it in text mode."""

        def __call__(self, input_ids, scores, **kwargs):
            if input_ids.shape[1] > sample.seq_len + 1:
                raise Stop
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    modes = ("ablate", "keep-only") if scale_refused(engine) else ("ablate", "scale", "keep-only")
    for mode in modes:
        with engine.intervene(member.tolist(), mode=mode, scale=0.0, means=means):
            generate(engine, sample, steps=2)
        with pytest.raises(Stop), engine.intervene(member.tolist(), mode=mode, scale=3.0, means=means):
            generate(engine, sample, steps=3, stopping_criteria=StoppingCriteriaList([FailAfterSecondStep()]))
        assert _ACTIVE_PLAN.get() is None and len(engine.model._forward_pre_hooks) == hooks
        after = model_state(engine)
        assert all(torch.equal(state[name], after[name]) for name in state)
        assert torch.equal(plain_logits(engine, sample), before), mode


class LogScalePlan(_GenerationPlan):
    """scale written the other way: log(s) added to the set's image scores before the softmax."""

    def __init__(self, layout, n_heads, member, factor):
        super().__init__(layout, n_heads)
        self.member, self.factor = member, factor

    def attend(self, module, layer, query, key, value, attn):
        from hearlib.method.plans_common import expand_heads

        n_query, n_key = query.shape[2], key.shape[-2]
        if self.layout.encoder:         # every decoder query reads the encoder's image positions
            ts, img = 0, self.layout.image_positions
        else:
            ts, img, _ = self.layout.locate(n_query, n_key)
        keys, values = expand_heads(key, query.shape[1]), expand_heads(value, query.shape[1])
        scores = attn.scores(torch.matmul(query, keys.transpose(-1, -2)))
        heads = self.member[layer * query.shape[1]:(layer + 1) * query.shape[1]]
        if ts < n_query and img.numel():
            shift = torch.zeros_like(scores[:, :, ts:])
            shift[..., img] = torch.where(heads, float(np.log(self.factor)), 0.0)[None, :, None, None]
            scores[:, :, ts:] += shift
        scores = scores.masked_fill(attn.blocked(n_query, n_key, query.device), float("-inf"))
        return torch.matmul(scores.softmax(-1).to(values.dtype), values).transpose(1, 2).contiguous()


@pytest.mark.parametrize("factor", [0.25, 4.0])
def test_scale_multiplies_the_sets_image_attention_and_renormalises(setup, factor):
    engine, means, sample, member = setup
    if scale_refused(engine):
        return
    with engine.intervene(member.tolist(), mode="scale", scale=factor) as plan:
        assert isinstance(plan, ScalePlan)
        _, steps = generate(engine, sample, steps=2)
        # the same generation under the other formulation, through the same layout and hook
        other = LogScalePlan(plan.layout, engine.n_heads, plan.member, factor)
        with ablation(other):
            _, expected = generate(engine, sample, steps=2)
    _, plain = generate(engine, sample, steps=2)
    assert max(float((a - b).abs().max()) for a, b in zip(steps, expected)) <= TOLERANCE
    assert max(float((a - b).abs().max()) for a, b in zip(steps, plain)) > \
        100 * TOLERANCE * (engine.family.logit_scale_of(engine.model) or 1.0)


def test_bad_input_is_a_clear_error_and_leaves_nothing_behind(setup):
    engine, means, sample, member = setup
    hooks = len(engine.model._forward_pre_hooks)
    with pytest.raises(UserError, match="unknown mode"):
        with engine.intervene([0], mode="boost", means=means):
            pass
    with pytest.raises(UserError, match="needs mean keys/values"):
        with engine.intervene([0], mode="ablate"):
            pass
    with pytest.raises(UserError, match="outside"):
        head_set(engine, [(engine.n_layers, 0)])
    with pytest.raises(UserError, match="outside"):
        head_set(engine, [engine.n_total_heads])
    with pytest.raises(UserError, match="boolean mask"):
        head_set(engine, np.ones(engine.n_total_heads, bool))
    with pytest.raises(UserError, match="layer.head"):
        head_set(engine, "1.x")
    with pytest.raises(UserError, match="scale"):
        with engine.intervene([0], mode="scale", scale=-1):
            pass
    for same in ("0.1, 1.0", [(0, 1), (1, 0)], [1, engine.n_heads], np.array([[0, 1], [1, 0]]),
                 torch.tensor([1, engine.n_heads])):
        assert head_set(engine, same).nonzero().flatten().tolist() == [1, engine.n_heads]
    # means of another prompt prefix: refused at the prompt's forward, and cleaned up
    wrong = MeanKV(means.k, means.v, {**means.meta, "prefix_hash": "0" * 16})
    with pytest.raises(MeansMismatch, match="prompt prefix"), engine.intervene([0], means=wrong):
        generate(engine, sample, steps=1)
    assert _ACTIVE_PLAN.get() is None and len(engine.model._forward_pre_hooks) == hooks
