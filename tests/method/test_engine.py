"""The ablation engine, on a tiny random-weight model of every family of the paper.

The literal ablation (one full-sequence forward per mask, substitution inside attention)
is the reference for the fast one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.method.fastpath import shared_head_prefixes
from hearlib.errors import MeansMismatch, UserError
from hearlib.method.masks import parse_batch_size
from hearlib.method.means import MeanKV, compute_means
from hearlib.method.loading import load_engine
from hearlib.families.tiny import FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(request.param))
    images = random_images(5, seed=1)
    means = compute_means(engine, images[1:], progress=False)
    sample = engine.prepare(images[0], answer="dog")
    return engine, means, sample, images


def unpatched_adjusted_logits(engine, sample, positions=slice(-1, None)):
    """The model as shipped (eager attention), adjusted answer logit at ``positions``."""
    model = engine.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            logits = model(**sample.inputs).logits[0, positions].double()
    finally:
        model.set_attn_implementation({"text_config": "hear"})
    return logits


def routes_tokens_to_experts(engine) -> bool:
    """A mixture-of-experts decoder: each expert's product has as many rows as tokens routed to it,
    so a value depends on which other masks share the batch (by rounding only)."""
    config = engine.family.text_config_of(engine.model.config)
    return any(getattr(config, name, None) for name in ("num_experts", "n_routed_experts", "num_local_experts",
                                                        "moe_num_experts"))


def random_masks(engine, sample, n, seed):
    rng = np.random.default_rng(seed)
    heads = rng.random((n, engine.n_total_heads)) > 0.5
    text = rng.random((n, sample.n_text)) > 0.3
    image = rng.random((n, sample.n_image)) > 0.3
    return heads, text, image


def test_sample_layout_is_prefix_image_text(setup):
    engine, _, sample, _ = setup
    ids = sample.inputs["input_ids"][0]
    image = sample.image_positions
    assert sample.n_image > 0 and sample.n_text > 0
    if engine.family.encoder_decoder:     # the image in the encoder's input, the text the decoder's
        assert bool((ids[image] == engine.image_token_id).all())          # (test_encoder_decoder.py)
        assert int((ids == engine.image_token_id).sum()) == sample.n_image
        assert sample.text_start == 0 and sample.n_text == sample.inputs["decoder_input_ids"].shape[-1]
        return
    if engine.family.cross_attention:     # the image tokens are the cross-attention keys (test_cross_attention.py)
        assert torch.equal(image.cpu(), torch.arange(sample.n_image))
        image = (ids == engine.image_token_id).nonzero().flatten()
    assert bool((ids[image] == engine.image_token_id).all())
    assert not bool((ids[sample.text_start:] == engine.image_token_id).any())
    assert sample.text_start == int(image[-1]) + 1
    assert sample.text_ids == ids[sample.text_start:].tolist()


def test_fast_equals_literal_for_random_head_text_and_image_masks(setup):
    engine, means, sample, _ = setup
    heads, text, image = random_masks(engine, sample, 6, seed=0)
    fast = engine.logits(sample, means, heads, text, image, method="fast", batch_size=4)
    literal = engine.logits(sample, means, heads, text, image, method="literal")
    assert np.abs(fast - literal).max() <= 1e-4
    assert np.ptp(literal) > 1e-3, "the masks must actually change the logit"


def test_fast_equals_literal_for_head_masks_only(setup):
    engine, means, sample, _ = setup
    heads, _, _ = random_masks(engine, sample, 5, seed=3)
    fast = engine.logits(sample, means, heads, method="fast", batch_size=5)
    literal = engine.logits(sample, means, heads, method="literal")
    assert np.abs(fast - literal).max() <= 1e-4


def test_layers_run_once_per_group_of_masks_sharing_their_heads_and_give_the_same_values(setup):
    """Masks that agree on the heads of layers 0..l share layer l's work, and the last layer computes
    the last position only; the values are those of every mask through every layer at every
    position, bit for bit, and the literal path's within 1e-4."""
    engine, means, sample, _ = setup
    rng = np.random.default_rng(7)
    heads = rng.random((48, engine.n_total_heads)) < 0.75
    heads[:12] = heads[12:24]                          # whole duplicate masks as well
    groups = shared_head_prefixes(torch.as_tensor(heads), engine.n_heads, engine.n_layers, n_text=sample.n_text)
    assert groups[0] is not None, "layer 0 has few head patterns: its rows must be grouped"
    fast = engine.path(sample) == "fast"               # (records the sample: its forward is not counted)
    calls = []
    attention0 = engine.family.attention_modules(engine.model)[0]      # inside layer 0: the rows it computes
    handle = attention0.register_forward_pre_hook(lambda module, args, kwargs: calls.append(
        (args[0] if args else kwargs["hidden_states"]).shape[0]), with_kwargs=True)
    try:
        if fast:
            grouped = engine.logits(sample, means, heads, batch_size=48)
            # a family whose layers' inputs do not follow the mask rows (Family.fast_groups: Gemma 3n) runs every row
            assert calls == ([groups[0][0].numel()] if engine.family.fast_groups else [48])
            assert (calls[0] < 48) == engine.family.fast_groups
        engine.share_prefixes = engine.last_position_only = False
        try:
            calls.clear()
            every_row = engine.logits(sample, means, heads, batch_size=48)
            assert not fast or calls == [48]
        finally:
            engine.share_prefixes, engine.last_position_only = engine.family.fast_groups, True
    finally:
        handle.remove()
    if fast and routes_tokens_to_experts(engine):
        assert np.abs(grouped - every_row).max() <= 1e-6
    elif fast:
        assert np.array_equal(grouped, every_row)
    literal = engine.logits(sample, means, heads[:6], method="literal")
    assert np.abs(every_row[:6] - literal).max() <= 1e-4


def test_shared_head_prefixes_group_exactly_the_masks_that_agree_up_to_each_layer():
    rng = np.random.default_rng(0)
    n_heads, n_layers = 3, 4
    heads = torch.as_tensor(rng.random((200, n_heads * n_layers)) < 0.75)
    groups = shared_head_prefixes(heads, n_heads, n_layers, n_text=4, max_fraction=1.0)
    for layer, group in enumerate(groups):
        first, member = group
        prefix = heads[:, :(layer + 1) * n_heads].numpy()
        patterns = {tuple(row) for row in prefix}
        assert first.numel() == len(patterns)
        assert np.array_equal(prefix, prefix[first.numpy()][member.numpy()])   # each row = its group's first row
        assert all(int(member[f]) == i and int(f) == int(np.flatnonzero(member.numpy() == i)[0])
                   for i, f in enumerate(first))
    assert shared_head_prefixes(heads[:8], n_heads, n_layers, n_text=4) == [None] * n_layers    # too few to bother
    few_rows = shared_head_prefixes(heads, n_heads, n_layers, n_text=1, max_fraction=1.0)
    assert few_rows[0] is None and few_rows[1] is not None     # 8 groups × 1 position: products too small
    many = shared_head_prefixes(heads, n_heads, n_layers, n_text=4, max_fraction=0.5)
    cut = next(i for i, g in enumerate(many) if g is None)
    assert all(g is None for g in many[cut:]) and groups[cut][0].numel() > 100


def test_auto_batch_size_times_the_sizes_once_and_keeps_the_fastest(setup, monkeypatch):
    engine, means, sample, _ = setup
    if engine.path(sample) != "fast":
        pytest.skip("the literal path runs one mask at a time")
    monkeypatch.setattr("hearlib.method.engine.AUTO_BATCH_SIZES", (16, 24, 32))
    monkeypatch.setattr(engine, "_tuned_batch", None)
    seen = []
    original = engine._fast
    monkeypatch.setattr(engine, "_fast", lambda s, m, h, t, i: (seen.append(h.shape[0]), original(s, m, h, t, i))[1])
    heads = np.random.default_rng(3).random((100, engine.n_total_heads)) < 0.75
    auto = engine.logits(sample, means, heads, batch_size="auto")
    assert seen[:3] == [16, 24, 32] and engine._tuned_batch in (16, 24, 32)
    assert all(size == engine._tuned_batch for size in seen[3:-1]) and sum(seen) == 100
    every = engine.logits(sample, means, heads, batch_size=100)
    if routes_tokens_to_experts(engine):
        assert np.abs(auto - every).max() <= 1e-6
    else:
        assert np.array_equal(auto, every)
    seen.clear()
    engine.logits(sample, means, heads[:20], batch_size="auto")            # later calls reuse the choice
    assert seen[0] == min(20, engine._tuned_batch)


def test_values_do_not_depend_on_the_batch_size(setup):
    """Batches of 16 masks or more give every mask the same value bit for bit, whatever else is in
    the batch (how rows are grouped, whether the last layer computes one position); mixture-of-experts
    decoders up to rounding."""
    engine, means, sample, _ = setup
    heads = np.random.default_rng(11).random((48, engine.n_total_heads)) < 0.75
    reference = engine.logits(sample, means, heads, batch_size=48)
    for size in (16, 17, 31):
        values = engine.logits(sample, means, heads, batch_size=size)
        if routes_tokens_to_experts(engine):
            assert np.abs(values - reference).max() <= 1e-6, size
        else:
            assert np.array_equal(values, reference), size


@pytest.mark.parametrize("value", [0, -3, "many", 2.5, None])
def test_bad_batch_sizes_are_clear_errors(value):
    with pytest.raises(UserError, match="batch size"):
        parse_batch_size(value)


def test_all_intact_masks_reproduce_the_unpatched_model(setup):
    engine, means, sample, _ = setup
    logits = unpatched_adjusted_logits(engine, sample)[0]
    expected = float(logits[sample.answer_id] - logits.mean())
    intact = np.ones((2, engine.n_total_heads), bool)
    for method in ("fast", "literal"):
        assert np.abs(engine.logits(sample, means, intact, method=method) - expected).max() <= 1e-5
    assert abs(engine.record(sample).logit - expected) <= 1e-5


def test_means_from_the_samples_own_image_make_full_ablation_a_no_op(setup):
    engine, _, sample, images = setup
    own = compute_means(engine, [images[0]], progress=False)
    intact = engine.record(sample).logit
    ablated = np.zeros((1, engine.n_total_heads), bool)
    for method in ("fast", "literal"):
        assert abs(engine.logits(sample, own, ablated, method=method)[0] - intact) <= 1e-5


def test_batched_means_equal_each_images_own_forward(setup):
    """The means' batched forward (one processor call, the model's own mask per row) gives every
    family the mean of each image's keys/values from its own recorded forward."""
    engine, means, _, images = setup
    own = [engine.image_keys_values(engine.prepare(image)) for image in images[1:]]
    keys = torch.stack([k for k, _ in own]).double().mean(0)
    values = torch.stack([v for _, v in own]).double().mean(0)
    np.testing.assert_allclose(means.k.double(), keys, rtol=0, atol=1e-5)
    np.testing.assert_allclose(means.v.double(), values, rtol=0, atol=1e-5)


def test_ablation_changes_text_positions_only(setup):
    engine, means, sample, _ = setup
    from hearlib.method.attention import LiteralPlan, ablation

    before = unpatched_adjusted_logits(engine, sample, positions=slice(None))
    heads = torch.zeros((1, engine.n_total_heads), dtype=torch.bool)
    with torch.no_grad(), ablation(LiteralPlan(sample.text_start, sample.image_positions, means, heads, None, None)):
        after = engine.model(**sample.inputs).logits[0].double()
    ts = sample.text_start
    engine.record(sample)
    if engine.family.encoder_decoder:
        assert ts == 0                    # the logits are the decoder's, whose every position is a text position
    elif not sample.recorded.prefix_reads_text and not engine.family.cross_attention:
        assert torch.allclose(before[:ts], after[:ts], atol=1e-5)   # no prefix/image position reads text
    else:   # a prefix-LM (PaliGemma): the image positions read the ablated text; a cross-attention model's
            # prefix queries read the (mean) image keys themselves: they change too
        assert (before[:ts] - after[:ts]).abs().max() > 1e-6
    assert (before[ts:] - after[ts:]).abs().max() > 1e-4


def test_gqa_models_expand_key_value_groups_per_query_head(setup):
    engine, means, sample, _ = setup
    if engine.n_kv_heads == engine.n_heads:
        pytest.skip("this tiny family has no GQA")
    # Ablating one query head of a shared KV group must differ from ablating its neighbour.
    group = engine.n_heads // engine.n_kv_heads
    masks = np.ones((2, engine.n_total_heads), bool)
    masks[0, 0] = False
    masks[1, group - 1 if group > 1 else 1] = False
    fast = engine.logits(sample, means, masks, method="fast")
    literal = engine.logits(sample, means, masks, method="literal")
    assert np.abs(fast - literal).max() <= 1e-4
    assert abs(fast[0] - fast[1]) > 1e-7


def test_normalized_logit_is_one_intact_and_zero_fully_ablated(setup):
    engine, means, sample, _ = setup
    masks = np.stack([np.ones(engine.n_total_heads, bool), np.zeros(engine.n_total_heads, bool)])
    pi = engine.normalized(sample, means, masks)
    assert np.allclose(pi, [1.0, 0.0], atol=1e-6)


def test_record_attention_statistics_match_their_definition(setup):
    engine, _, sample, _ = setup
    record = engine.record(sample)
    L, H = engine.n_layers, engine.n_heads
    assert record.image_attention.shape == (L, H)
    assert record.text_to_image.shape == (L, H, sample.n_text, sample.n_image)
    # Eq. 10: sum over image keys, mean over text queries; a share of attention lies in [0, 1].
    assert np.allclose(record.image_attention, record.text_to_image.sum(-1).mean(-1), atol=1e-6)
    assert (record.image_attention >= 0).all() and (record.image_attention <= 1 + 1e-6).all()
    # Eager attention weights of the unpatched model give the same numbers.
    engine.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            output = engine.model(**sample.inputs, output_attentions=True)
        # BLIP-2's output keeps the decoder's attentions in language_model_outputs; an encoder-decoder's HeAr heads
        # are its decoder's cross-attention heads
        attentions = (output.cross_attentions if engine.family.encoder_decoder else output.attentions
                      if hasattr(output, "attentions") else output.language_model_outputs.attentions)
    finally:
        engine.model.set_attn_implementation({"text_config": "hear"})
    ts, img = sample.text_start, sample.image_positions
    if engine.family.cross_attention:     # Mllama's attentions: one per decoder layer, self or cross
        attentions = [attentions[index] for index in engine.covered_layers]
    for layer, attention in enumerate(attentions):
        expected = attention[0, :, ts:][:, :, img].float().numpy()
        assert np.allclose(record.text_to_image[layer], expected, atol=1e-5)


def test_head_outputs_sum_to_the_attention_block_output(setup):
    engine, _, sample, _ = setup
    record = engine.record(sample)
    layer = engine.n_layers - 1
    captured = {}
    attn = engine.family.attention_modules(engine.model)[layer]     # a hybrid decoder's last softmax layer
    projection = engine.family.output_projection_of(attn)          # o_proj, out_proj (LFM2-VL, OPT)...
    handle = projection.register_forward_hook(lambda m, a, out: captured.update(out=out[0, -1].double()))
    try:
        with torch.no_grad():
            engine.model(**sample.inputs)
    finally:
        handle.remove()
    bias = projection.bias.double() if projection.bias is not None else 0
    total = torch.as_tensor(record.head_outputs[layer]).double().sum(0) + bias
    assert torch.allclose(total, captured["out"], atol=1e-4)
    lens = engine.logit_lens(record, layer, 0, k=5)
    assert len(lens) == 5 and lens[0][1] >= lens[-1][1]


def test_means_file_round_trip_and_mismatch_errors(setup, tmp_path, tiny_model_dir):
    engine, means, sample, _ = setup
    path = means.save(tmp_path / "means.safetensors")
    loaded = MeanKV.load(path, engine=engine)
    assert torch.equal(loaded.k.float(), means.k.float())
    heads = np.zeros((1, engine.n_total_heads), bool)
    assert np.allclose(engine.logits(sample, loaded, heads), engine.logits(sample, means, heads))
    other_prompt = engine.prepare(_any_image(), answer="dog",
                                  prompt="What colour is the main object in the image?")
    # The prompt text after the image does not change the prefix: same means apply.
    assert other_prompt.prefix_hash == sample.prefix_hash
    loaded.meta["prefix_hash"] = "0" * 16
    with pytest.raises(MeansMismatch, match="prompt prefix"):
        engine.logits(sample, loaded, heads)
    other = FAMILIES[(FAMILIES.index(engine.model.config.model_type) + 1) % len(FAMILIES)]
    other_engine = load_engine(tiny_model_dir(other))
    with pytest.raises(MeansMismatch, match="cannot be used here"):
        MeanKV.load(path, engine=other_engine)


def _any_image():
    from PIL import Image
    return Image.new("RGB", (48, 48), (120, 30, 200))


def test_bad_inputs_are_clear_errors(setup, tmp_path):
    engine, means, sample, _ = setup
    with pytest.raises(UserError, match="cannot represent the answer"):
        engine.prepare(_any_image(), answer="xylophonequux")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UserError, match="cannot read image"):
        engine.prepare(broken, answer="dog")
    with pytest.raises(UserError, match="mask has shape"):
        engine.logits(sample, means, np.ones((2, engine.n_total_heads + 1), bool))
    with pytest.raises(UserError, match="non-empty"):
        engine.prepare(_any_image(), answer="dog", prompt="   ")


def test_answer_problem_reports_instead_of_raising(setup):
    engine, _, _, _ = setup
    assert engine.answer_problem("dog") is None
    # a word outside the word-level vocabulary; a tokenizer that transformers rebuilds as a BPE over the words
    # (Qwen3.5's) drops it instead of writing <unk>, so it is refused there only when nothing is left
    unknown = engine.tokenizer("xylophonequux", add_special_tokens=False)["input_ids"]
    for bad in ("xylophonequux", "dog xylophonequux") if unknown else ("xylophonequux",):
        problem = engine.answer_problem(bad)
        assert isinstance(problem, str) and "cannot represent" in problem and bad in problem
        with pytest.raises(UserError, match="cannot represent"):   # prepare still refuses it
            engine.prepare(_any_image(), answer=bad)
    for empty in ("", "   ", None, 3):
        assert "non-empty" in engine.answer_problem(empty)
    assert engine.answer_problem("dog", prompt="What colour is the main object in the image?") is None
    with pytest.raises(UserError, match="non-empty string"):     # a bad prompt is not the answer's problem
        engine.answer_problem("dog", prompt="  ")


def test_per_sample_caches_follow_the_means_object_not_its_id(tmp_path):
    """Caches on a sample are tied to the means object itself: other means give other numbers."""
    import numpy as np

    from hearlib.method.means import compute_means
    from hearlib.method.loading import load_engine
    from hearlib.families.tiny import build_tiny

    engine = load_engine(build_tiny("llava", tmp_path / "tiny"))
    rng = np.random.default_rng(3)
    from PIL import Image

    images = [Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")) for _ in range(3)]
    sample = engine.prepare(images[0], answer="dog")
    heads = np.zeros((1, engine.n_total_heads), bool)
    first = compute_means(engine, images[1:2], progress=False)
    second = compute_means(engine, images[2:3], progress=False)
    a = engine.logits(sample, first, heads)
    b = engine.logits(sample, second, heads)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(engine.logits(engine.prepare(images[0], answer="dog"), second, heads), b, atol=1e-5)
    assert engine.reference_logits(sample, first) != engine.reference_logits(sample, second)
    # the cache holds the means it was made with: that object cannot be freed and its id reused by
    # other means while the cache could still answer for it (an id()-keyed cache could)
    import gc
    import weakref

    engine.logits(sample, first, heads)
    alive = weakref.ref(first)
    del first
    gc.collect()
    assert alive() is not None


def _misaligned_copy(model) -> None:
    """Move every parameter to memory that starts 8 bytes past a 64-byte boundary, as weights
    memory-mapped from a safetensors file can."""
    with torch.no_grad():
        for param in model.parameters():
            buffer = torch.empty(param.numel() + 16, dtype=param.dtype)
            offset = ((8 - buffer.data_ptr()) % 64) // param.element_size()
            moved = buffer[offset:offset + param.numel()].view(param.shape)
            moved.copy_(param.data)
            param.data = moved
            assert param.data_ptr() % 64 == 8


def test_records_do_not_depend_on_where_the_weights_lie_in_memory(tiny_model_dir, random_images):
    """The CPU kernels round differently for operands that are not 64-byte aligned, so the engine
    gives every weight aligned memory: a model whose weights lie 8 bytes off (as memory-mapped
    safetensors weights can) records the same head outputs and logit lens, bit for bit, as a copy
    in fresh memory (what ``.to("cpu:0")`` under accelerate made of it)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hearlib.method.engine import Engine

    folder = tiny_model_dir("llava")
    processor = AutoProcessor.from_pretrained(folder)
    shifted = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    _misaligned_copy(shifted)
    copied = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).to("cpu:0")
    engines = [Engine(shifted, processor), Engine(copied, processor)]
    assert all(p.data_ptr() % 64 == 0 for e in engines for p in e.model.parameters())
    image = random_images(1, seed=3)[0]
    records = [e.record(e.prepare(image, answer="dog")) for e in engines]
    np.testing.assert_array_equal(records[0].head_outputs, records[1].head_outputs)
    assert records[0].logit == records[1].logit
    lens = [e.logit_lens_all(r) for e, r in zip(engines, records)]
    np.testing.assert_array_equal(lens[0][0], lens[1][0])
    np.testing.assert_array_equal(lens[0][1], lens[1][1])
