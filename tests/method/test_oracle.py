"""An ablation oracle written from the paper's definition (Eq. 5), sharing no code with the engine.

For an ablated head (l, h), every text query (the positions after the image) reads, at the image
positions, the mean key and value over reference images instead of the sample's own; image and
prefix queries, and every other head, are untouched. The oracle is an attention function of its
own, registered with transformers beside hearlib's: the model computes its projections, norms and
rotary embeddings as shipped, and hands the oracle the rotated queries, keys, values, its own
eager mask, the scale and the soft-cap; the oracle expands key/value heads, substitutes, and
computes softmax(q·kᵀ)·v by hand. Compared with ``engine.logits`` (fast and literal) for single
heads, random masks and the full ablation on tiny models of five kinds of family, each mask first
checked to move the logit by more than ten times the tolerance. The mutations at the end break the engine on
purpose and check that this comparison fails.

Cross-attention (Mllama; docs/METHOD.md, "Cross-attention models"): the same attention function takes the
cross-attention modules' queries, normed keys and values and computes by hand
(:func:`cross_attention_by_hand`) that query t of head h reads the mean key and value of image key i
unless x_h · u_t · v_i = 1, every query before the text with u = 1; the means are the keys (after
``k_norm``) and values captured with hooks from the reference images' eager forwards and averaged here
(:func:`cross_means_by_hand`). Compared with the literal path for x, u and v, alone and together, and
with nothing ablated with the eager model and ``engine.record``. Both
take the image keys' positions among the layer's keys, so an encoder-decoder (image keys a subset of
the encoder positions) reuses them."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from hearlib.method.means import MeanKV, compute_means
from hearlib.method.loading import load_engine

# causal MHA/GQA (LLaVA), bidirectional image block + sliding window (Gemma 3), soft-capped
# bidirectional prefix (PaliGemma on Gemma 2), M-RoPE (Qwen2-VL), pixel-shuffled tokens (Idefics3)
KINDS = {"llava": "causal, GQA", "gemma3": "bidirectional image block, sliding window",
         "paligemma": "soft-capped bidirectional prefix", "qwen2_vl": "M-RoPE, GQA", "idefics3": "causal, shuffled"}
ORACLE = "hear_oracle"
TOLERANCE = 2e-6      # measured: engine and oracle agree within 1.2e-7; the masks move the logit by >= 2e-3
_STATE: dict = {}


def oracle_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """softmax(q·kᵀ·scale [soft-capped] + mask)·v, with the chosen heads' text queries reading the
    mean keys/values at the image positions. query [B, H, S, D]; key/value [B, KVH, S, D]. A
    cross-attention module named in ``_STATE["cross"]`` goes to :func:`cross_attention_by_hand`."""
    if id(module) in _STATE.get("cross", {}):
        image_keys, keep, mean_k, mean_v = _STATE["cross"][id(module)]
        return cross_attention_by_hand(query, key, value, attention_mask, scaling, image_keys, keep, mean_k, mean_v)
    n_heads, n_kv = query.shape[1], key.shape[1]
    group = n_heads // n_kv
    keys = key.repeat_interleave(group, dim=1).double()
    values = value.repeat_interleave(group, dim=1).double()
    q = query.double()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5

    def logits(q_rows, k_rows):
        s = q_rows @ k_rows.transpose(-1, -2) * scale
        return torch.tanh(s / softcap) * softcap if softcap is not None else s

    scores = logits(q, keys)
    ablated = _STATE.get("heads", {}).get(id(module), ())
    image, text = _STATE.get("image"), _STATE.get("text")
    v_by_row = values[:, :, None].expand(-1, -1, q.shape[2], -1, -1).clone()     # [B, H, S(query), S(key), D]
    for h in ablated:
        kv = h // group
        mean_k = _STATE["means"].k[_STATE["layer_of"][id(module)], kv].double()     # [P_img, D]
        mean_v = _STATE["means"].v[_STATE["layer_of"][id(module)], kv].double()
        for t in text:
            scores[:, h, t, image] = logits(q[:, h, t:t + 1], mean_k[None])[:, 0]
            v_by_row[:, h, t, image] = mean_v
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : keys.shape[-2]].double()
    probs = scores.softmax(-1)
    out = torch.einsum("bhqk,bhqkd->bhqd", probs, v_by_row)
    return out.transpose(1, 2).contiguous().to(query.dtype), probs.to(query.dtype)


AttentionInterface.register(ORACLE, oracle_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ORACLE, eager_mask)


@contextlib.contextmanager
def oracle(engine, sample, means, heads_ablated):
    """The model runs on the oracle for the duration; ``heads_ablated``: flat head indices l·H + h."""
    modules = engine.family.attention_modules(engine.model)
    ids = sample.inputs["input_ids"][0]
    image = (ids == engine.image_token_id).nonzero().flatten()
    text = list(range(int(image[-1]) + 1, ids.numel()))
    per_module = {}
    for n in heads_ablated:
        per_module.setdefault(id(modules[n // engine.n_heads]), []).append(n % engine.n_heads)
    _STATE.update(heads=per_module, image=image, text=text, means=means,
                  layer_of={id(m): i for i, m in enumerate(modules)})
    try:
        with running_on(engine, ORACLE):
            yield
    finally:
        _STATE.clear()


@contextlib.contextmanager
def running_on(engine, implementation: str):
    """The engine's decoder runs on the attention ``implementation`` for the duration, then on hearlib's again."""
    engine.model.set_attn_implementation({engine.family.text_config: implementation})
    try:
        yield
    finally:
        engine.model.set_attn_implementation({engine.family.text_config: "hear"})


@torch.no_grad()
def eager_logit(engine, sample) -> float:
    """The answer's logit minus the mean logit at the last position, the model on transformers' eager attention."""
    with running_on(engine, "eager"):
        logits = engine.model(**sample.inputs, use_cache=False).logits[0, -1].double()
    return float(logits[sample.answer_id] - logits.mean())


@torch.no_grad()
def oracle_logit(engine, sample, means, heads_ablated) -> float:
    """The answer's logit minus the mean logit at the last position, under the oracle."""
    with oracle(engine, sample, means, heads_ablated):
        logits = engine.model(**sample.inputs, use_cache=False).logits[0, -1].double()
    return float(logits[sample.answer_id] - logits.mean())


def masks_under_test(engine, rng):
    n = engine.n_total_heads
    rows = [np.ones(n, bool), np.zeros(n, bool)]                 # all intact, full ablation
    for head in (0, engine.n_heads - 1, n - 1):                  # single heads: first, last of layer 0, last
        row = np.ones(n, bool)
        row[head] = False
        rows.append(row)
    rows += list(rng.random((3, n)) > 0.5)                        # random masks
    return np.stack(rows)


@pytest.fixture(scope="module", params=list(KINDS))
def setup(request, tiny_model_dir, random_images):
    engine = load_engine(tiny_model_dir(request.param))
    images = random_images(6, seed=11)
    means = compute_means(engine, images[1:], progress=False)
    sample = engine.prepare(images[0], answer="dog")
    masks = masks_under_test(engine, np.random.default_rng(5))
    expected = np.array([oracle_logit(engine, sample, means, np.flatnonzero(~row)) for row in masks])
    return engine, means, sample, masks, expected


def test_the_masks_move_the_logit_far_beyond_the_tolerance(setup):
    engine, _, _, masks, expected = setup
    intact = expected[0]
    scale = max(1.0, abs(intact))
    moved = np.abs(expected[1:] - intact)
    assert moved.min() > 10 * TOLERANCE * scale, f"{engine.family.model_type}: a mask leaves the logit: {moved}"


@pytest.mark.parametrize("method", ["fast", "literal"])
def test_the_engine_equals_the_oracle(setup, method):
    engine, means, sample, masks, expected = setup
    got = engine.logits(sample, means, masks, method=method, batch_size=len(masks))
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= TOLERANCE * scale, (engine.family.model_type, got - expected)


def test_the_oracle_with_nothing_ablated_is_the_model_itself(setup):
    engine, _, sample, _, expected = setup
    own = eager_logit(engine, sample)
    assert abs(expected[0] - own) <= TOLERANCE * max(1.0, abs(own))


def test_the_families_cover_softcap_and_gqa(setup):
    engine = setup[0]
    config = engine.family.text_config_of(engine.model.config)
    if engine.family.model_type == "paligemma":
        assert getattr(config, "attn_logit_softcapping", None)
    if engine.family.model_type in ("llava", "qwen2_vl"):
        assert engine.n_kv_heads < engine.n_heads


# ----------------------------------------------------------------------------- cross-attention

def cross_attention_by_hand(query, key, value, attention_mask, scale, image_keys, keep, mean_k, mean_v):
    """softmax(q·kᵀ·scale + mask)·v over a cross-attention layer's keys, where query t of head h reads
    the mean key and value of image key i (key position ``image_keys[i]``) instead of its own unless
    ``keep[h, t, i]``; the other keys (an encoder-decoder's text positions) are always its own.
    query [B, H, S, D]; key/value [B, KVH, K, D]; keep bool [H, S, P]; mean_k/mean_v [KVH, P, D]."""
    group = query.shape[1] // key.shape[1]
    q = query.double()
    keys, values = key.repeat_interleave(group, dim=1).double(), value.repeat_interleave(group, dim=1).double()
    mean_k, mean_v = mean_k.repeat_interleave(group, dim=0).double(), mean_v.repeat_interleave(group, dim=0).double()
    own = q @ keys.transpose(-1, -2) * scale                                     # [B, H, S, K]
    scores = own.clone()
    scores[..., image_keys] = torch.where(keep, own[..., image_keys], q @ mean_k.transpose(-1, -2) * scale)
    if attention_mask is not None:
        scores = scores + attention_mask[..., : keys.shape[-2]].double()
    probs = scores.softmax(-1)
    reads_own = torch.ones(probs.shape[1:], dtype=torch.bool)
    reads_own[..., image_keys] = keep
    out = (probs * reads_own) @ values + (probs[..., image_keys] * ~keep) @ mean_v
    return out.transpose(1, 2).contiguous().to(query.dtype), probs.to(query.dtype)


def keep_of(heads, rows, image) -> torch.Tensor:
    """keep[h, t, i] = x_h · u_t · v_i for one layer: heads [H], rows [S] (u per query), image [P]."""
    heads, rows, image = (torch.as_tensor(np.asarray(m, bool)) for m in (heads, rows, image))
    return heads[:, None, None] & rows[None, :, None] & image[None, None, :]


@torch.no_grad()
def cross_means_by_hand(model, modules, inputs_per_image, image_keys=slice(None)):
    """Per cross-attention module, the mean over the images of its keys (``k_norm``'s output where it has
    one, else ``k_proj``'s) and values (``v_proj``'s) at ``image_keys``, captured with hooks from the
    forwards of ``model`` as it runs: [(mean_k, mean_v) [KVH, P, D]] in the modules' order."""
    captured = [([], []) for _ in modules]

    def keep(store, dim):
        def hook(projection, args, out):       # [B, KVH, K, D] after a norm, [B, K, KVH·D] from a projection
            heads = out if out.dim() == 4 else out.view(out.shape[0], out.shape[1], -1, dim).transpose(1, 2)
            store.append(heads[0, :, image_keys].double())
        return hook

    handles = []
    for module, (keys, values) in zip(modules, captured):
        key_site = module.k_norm if hasattr(module, "k_norm") else module.k_proj
        handles += [key_site.register_forward_hook(keep(keys, module.head_dim)),
                    module.v_proj.register_forward_hook(keep(values, module.head_dim))]
    try:
        for inputs in inputs_per_image:
            model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    assert all(len(keys) == len(inputs_per_image) for keys, _ in captured)      # one key read per image
    return [(torch.stack(keys).mean(0), torch.stack(values).mean(0)) for keys, values in captured]


@contextlib.contextmanager
def cross_oracle(engine, reads: dict):
    """The model runs on the oracle for the duration; ``reads``: module -> (image_keys, keep, mean_k, mean_v)."""
    _STATE.update(cross={id(module): read for module, read in reads.items()})
    try:
        with running_on(engine, ORACLE):
            yield
    finally:
        _STATE.clear()


def mllama_cross_attention(model) -> list:
    """Mllama's cross-attention modules in decoder order (``text_config.cross_attention_layers``)."""
    layers = model.model.language_model.layers
    return [layers[i].cross_attn for i in model.config.text_config.cross_attention_layers]


@torch.no_grad()
def mllama_oracle_logit(engine, sample, modules, means, heads, text, image) -> float:
    """The adjusted answer logit with x = ``heads`` (flat l'·H + h over the cross-attention layers),
    u = ``text`` (the positions after <|image|>; every earlier query reads the image with u = 1) and
    v = ``image`` (every key of a cross-attention layer is an image key)."""
    ids = sample.inputs["input_ids"][0]
    text_start = int((ids == engine.image_token_id).nonzero()[-1]) + 1
    rows = np.ones(ids.numel(), bool)
    rows[text_start:] = text
    reads = {}
    for layer, (module, (mean_k, mean_v)) in enumerate(zip(modules, means)):
        n = module.num_heads
        keep = keep_of(heads[layer * n:(layer + 1) * n], rows, image)
        reads[module] = (torch.arange(mean_k.shape[1]), keep, mean_k, mean_v)
    with cross_oracle(engine, reads):
        logits = engine.model(**sample.inputs, use_cache=False).logits[0, -1].double()
    return float(logits[sample.answer_id] - logits.mean())


def cross_masks_under_test(n_heads, n_per_layer, n_text, n_image, rng):
    """(heads, text, image) rows: intact, x = 0, single heads (first, last of layer 0, last), u alone,
    v alone, and random x, u, v together."""
    heads, text, image = np.ones((10, n_heads), bool), np.ones((10, n_text), bool), np.ones((10, n_image), bool)
    heads[1] = False
    heads[2, 0] = heads[3, n_per_layer - 1] = heads[4, n_heads - 1] = False
    text[5] = rng.random(n_text) > 0.5
    image[6] = rng.random(n_image) > 0.5
    heads[7:], text[7:], image[7:] = (rng.random((3, n)) > 0.5 for n in (n_heads, n_text, n_image))
    return heads, text, image


@pytest.fixture(scope="module")
def cross_setup(tiny_model_dir, random_images):
    """The tiny Mllama, the engine's means (``compute_means``) over four reference images, a sample, the masks
    and the oracle's logits for them (its means captured here from the same four images)."""
    engine = load_engine(tiny_model_dir("mllama"))
    modules = mllama_cross_attention(engine.model)
    images = random_images(5, seed=13)
    sample = engine.prepare(images[0], answer="dog")
    with running_on(engine, "eager"):
        means = cross_means_by_hand(engine.model, modules, [engine.prepare(image).inputs for image in images[1:]])
    masks = cross_masks_under_test(len(modules) * modules[0].num_heads, modules[0].num_heads, sample.n_text,
                                   means[0][0].shape[1], np.random.default_rng(7))
    expected = np.array([mllama_oracle_logit(engine, sample, modules, means, *row) for row in zip(*masks)])
    return engine, compute_means(engine, images[1:], progress=False), sample, masks, expected


def test_the_cross_attention_masks_move_the_logit_far_beyond_the_tolerance(cross_setup):
    _, _, _, _, expected = cross_setup
    moved = np.abs(expected[1:] - expected[0])
    assert moved.min() > 10 * TOLERANCE * max(1.0, abs(expected[0])), moved


def test_the_cross_attention_oracle_with_nothing_ablated_is_the_model_and_its_record(cross_setup):
    engine, _, sample, _, expected = cross_setup
    own = eager_logit(engine, sample)
    assert abs(expected[0] - own) <= TOLERANCE * max(1.0, abs(own))
    assert abs(expected[0] - engine.record(sample).logit) <= TOLERANCE * max(1.0, abs(own))


def test_the_engine_equals_the_cross_attention_oracle(cross_setup):
    engine, means, sample, (heads, text, image), expected = cross_setup
    got = engine.logits(sample, means, heads, text, image, method="literal")
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= TOLERANCE * scale, got - expected


# ----------------------------------------------------------------------------- mutations

def _swap_two_heads(monkeypatch):
    from hearlib.method import fastpath as module     # the fast path's mask of kept heads
    original = module.keep_mask

    def swapped(layer, n_heads, heads, text, image):
        heads = heads.clone()
        heads[:, [0, 1]] = heads[:, [1, 0]]
        return original(layer, n_heads, heads, text, image)
    monkeypatch.setattr(module, "keep_mask", swapped)


def _zeros_for_means(monkeypatch):
    from hearlib.method import engine as module
    original = module.Engine.logits

    def zeroed(self, sample, means, *args, **kwargs):
        zero = MeanKV(torch.zeros_like(means.k), torch.zeros_like(means.v), dict(means.meta))
        return original(self, sample, zero, *args, **kwargs)
    monkeypatch.setattr(module.Engine, "logits", zeroed)


def _image_queries_too(monkeypatch):
    from hearlib.method import attention as module
    original = module.LiteralPlan.__init__

    def from_the_image(self, text_start, image_positions, *args, **kwargs):
        original(self, int(image_positions[0]), image_positions, *args, **kwargs)
    monkeypatch.setattr(module.LiteralPlan, "__init__", from_the_image)


MUTATIONS = {"swap two heads' mask bits": (_swap_two_heads, "fast"),
             "zeros instead of the means": (_zeros_for_means, "fast"),
             "image queries ablated too": (_image_queries_too, "literal")}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_oracle_catches_a_broken_engine(setup, mutation, monkeypatch):
    engine, means, sample, masks, expected = setup
    if engine.family.model_type != "llava":
        pytest.skip("one family is enough to show the comparison fails")
    apply, method = MUTATIONS[mutation]
    apply(monkeypatch)
    got = engine.logits(sample, means, masks, method=method, batch_size=len(masks))
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() > 100 * TOLERANCE * scale, f"{mutation} went unnoticed"


def _ignoring(mask: str):
    """A mutation: the literal plan's keep mask leaves out u (``"text"``) or v (``"image"``)."""
    def mutation(monkeypatch, sample):
        from hearlib.method import attention as module
        original = module.keep_mask

        def ignored(layer, n_heads, heads, text, image):
            return original(layer, n_heads, heads, None if mask == "text" else text, None if mask == "image" else image)
        monkeypatch.setattr(module, "keep_mask", ignored)
    return mutation


def _prefix_reads_its_own_image(monkeypatch, sample):
    from hearlib.method import attention as module
    original = module.keep_mask

    def prefix_kept(layer, n_heads, heads, text, image):
        keep = original(layer, n_heads, heads, text, image).expand(-1, -1, sample.seq_len, sample.n_image).clone()
        keep[:, :, :sample.text_start] = True
        return keep
    monkeypatch.setattr(module, "keep_mask", prefix_kept)


CROSS_MUTATIONS = {"zeros instead of the means": lambda monkeypatch, sample: _zeros_for_means(monkeypatch),
                   "u ignored": _ignoring("text"), "v ignored": _ignoring("image"),
                   "the prefix queries read their own image": _prefix_reads_its_own_image}


@pytest.mark.parametrize("mutation", list(CROSS_MUTATIONS))
def test_the_cross_attention_oracle_catches_a_broken_engine(cross_setup, mutation, monkeypatch):
    engine, means, sample, (heads, text, image), expected = cross_setup
    CROSS_MUTATIONS[mutation](monkeypatch, sample)
    got = engine.logits(sample, means, heads, text, image, method="literal")
    scale = max(1.0, float(np.abs(expected).max()))
    # measured: 2e-4 (the prefix, which reaches the answer only through later layers) to 3.5e-3
    assert np.abs(got - expected).max() > 10 * TOLERANCE * scale, f"{mutation} went unnoticed"
