"""Fixtures of tests/method for the model kinds whose HeAr heads are those of some decoder layers only
(docs/METHOD.md, "Cross-attention models", "Hybrid decoders", "Encoder-decoder models"): each kind's tiny
model, sample and means, built once a session and shared by tests/method/test_model_kinds.py (what holds for
every kind) and the kind's own file (test_cross_attention.py, test_hybrid.py, test_encoder_decoder.py); and
test_oracle.py's hand-written cross-attention for the kinds' own files."""
from __future__ import annotations

import dataclasses
import types
import warnings

import pytest


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a kind's tiny model is expected to be."""
    family: str                 # the tiny model's type (hearlib.families.tiny)
    flag: str                   # the Family attribute that marks the kind
    decoder_layers: int         # how many layers the tiny decoder has
    covered: tuple[int, ...]    # the decoder layers whose heads HeAr counts (Engine.covered_layers)
    layer_attribute: str        # the attribute that only the covered decoder layers have
    coverage: str               # a phrase of Engine.coverage
    fast_path_problem: str      # a phrase of Engine.fast_path_problem (and of the fast path's warning)


KINDS = {"cross-attention": Kind("mllama", "cross_attention", 4, (1, 3), "cross_attn", "2 cross-attention layers of 4",
                                 "cross-attention"),
         "hybrid": Kind("qwen3_5", "hybrid", 4, (1, 3), "self_attn", "2 of 4 decoder layers", "hybrid decoder"),
         "encoder-decoder": Kind("florence2", "encoder_decoder", 2, (0, 1), "encoder_attn", "not ablated",
                                 "encoder-decoder")}


@pytest.fixture(scope="session")
def kind_setup(tiny_model_dir, random_images):
    """``kind_setup(kind)`` -> (engine, the same model loaded as shipped with eager attention, 4 random
    images, the first one's sample answered "dog", the means over the other three), built once a session."""
    from transformers import AutoModelForImageTextToText

    from hearlib.method.loading import load_engine
    from hearlib.method.means import compute_means

    built: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in built:
            folder = tiny_model_dir(KINDS[kind].family)
            engine = load_engine(folder)
            images = random_images(4, seed=5)
            sample = engine.prepare(images[0], answer="dog")
            means = compute_means(engine, images[1:], progress=False)
            reference = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="eager").eval()
            built[kind] = engine, reference, images, sample, means
        return built[kind]

    return get


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request, kind_setup):
    """Each kind in turn: (its :class:`Kind`, then what ``kind_setup`` returns for it)."""
    return (KINDS[request.param], *kind_setup(request.param))


@pytest.fixture(scope="session")
def literal():
    """``literal(engine, sample, means, heads, text=None, image=None)`` -> ``engine.logits`` on the literal path,
    with RuntimeWarnings silenced (hearlib's own, the fast path's fallback and batch halving, are the fast method's)."""
    def run(engine, sample, means, heads, text=None, image=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return engine.logits(sample, means, heads, text, image, method="literal")
    return run


@pytest.fixture(scope="session")
def adjusted():
    """``adjusted(logits, answer_id)`` -> the answer's logit minus the mean logit, as ``engine.logits``
    reports it."""
    def of(logits, answer_id) -> float:
        logits = logits.double()
        return float(logits[answer_id] - logits.mean())
    return of


@pytest.fixture(scope="session")
def hand_written_cross_attention():
    """test_oracle.py's hand-written cross-attention, one copy for every file: a namespace with
    ``cross_attention_by_hand``, ``keep_of`` and ``cross_means_by_hand``, which take the image keys' positions
    among a layer's keys (an encoder-decoder's image keys are some of its encoder positions). tests/method is
    no package: pytest's rootdir import puts this folder on ``sys.path``, so the module imports by its name."""
    import test_oracle
    return types.SimpleNamespace(cross_attention_by_hand=test_oracle.cross_attention_by_hand,
                                 keep_of=test_oracle.keep_of, cross_means_by_hand=test_oracle.cross_means_by_hand)
