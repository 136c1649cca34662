"""hearlib.families.registry: every record is complete, and its paths find the right modules on the
family's tiny model; engine, loader and geometry read the records."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil

import numpy as np
import pytest
import torch

import hearlib.families
from hearlib.families import geometry, registry as families, tiny as testing
from hearlib.errors import UnsupportedModel
from hearlib.prompts import PAPER_PROMPT
from hearlib.families.registry import FAMILIES, Family, TinySpec, family_of

# the modules of hearlib.families that are not a lineage file
MACHINERY = {"registry", "geometry", "refusals", "coverage", "tiny", "real", "templates", "vocabulary"}
LINEAGES = sorted(m.name for m in pkgutil.iter_modules(hearlib.families.__path__) if m.name not in MACHINERY)
PATH_FIELDS = ("decoder", "layers", "attention", "output_projection", "final_norm", "lm_head", "text_config",
               "image_token_id")


# ---------------------------------------------------------------------------------------
# the records themselves
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_every_field_of_every_family_is_filled(model_type):
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    family = FAMILIES[model_type]
    assert family.model_type == model_type
    for field in dataclasses.fields(Family):
        value = getattr(family, field.name)
        if field.name == "resolution":
            assert value is None or (len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value))
        elif field.name in ("logit_scale", "final_softcap"):   # optional: wrappers whose unembedding differs
            assert value is None or callable(value)
        elif field.name == "requires":              # optional: (oldest release, why) where newer than pyproject's
            assert value is None or (len(value) == 2 and all(isinstance(v, str) and v for v in value))
        elif field.name == "softmax_layer":         # optional: only a hybrid decoder has one
            assert value is None or callable(value)
        elif field.name == "cross_attention_keys":  # optional: only a cross-attention model (Mllama) has one
            assert value is None or (callable(value) and family.softmax_layer is not None)
        elif field.name == "chat_template":         # optional: only a processor that keeps none (BLIP-2) needs it
            assert value is None or (isinstance(value, str) and value)
        elif field.name == "means_one_image_per_forward":   # a flag: True where a batched forward changes a row
            assert isinstance(value, bool)
        elif field.name == "fast_groups":           # a flag: False where a layer's inputs do not follow the mask rows
            assert isinstance(value, bool)
        elif field.name == "decoder_position_inputs":   # optional: the decoder's other per-position inputs (Gemma 3n)
            assert isinstance(value, tuple) and all(isinstance(name, str) and name for name in value)
        elif field.name == "layer_residual":        # optional: a layer that returns more than its residual stream
            assert value is None or callable(value)
        else:
            assert value not in (None, "", ()), f"{model_type}: {field.name} is empty"
    for name in PATH_FIELDS:
        # a step is an attribute or an index into a list (Florence-2's final norm: "layers.-1.final_layer_norm")
        assert all(part.isidentifier() or part.lstrip("-").isdigit() for part in getattr(family, name).split(".")), name
    # the classes load_engine's Auto classes pick for this model_type
    assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[model_type] == family.model_class
    # (a type AutoProcessor maps to nothing loads the class its checkpoint's processor_config.json names)
    assert PROCESSOR_MAPPING_NAMES.get(model_type, family.processor_class) == family.processor_class
    # the layout is a module-level function of a lineage file, with the signature image_token_layout calls
    module = importlib.import_module(family.layout.__module__)
    assert module.__name__.startswith("hearlib.families.") and getattr(module, family.layout.__name__) is family.layout
    assert list(inspect.signature(family.layout).parameters) == ["config", "processor", "sample", "width", "height"]
    # the tiny model's spec: what hearlib.families.tiny derives the model from
    assert isinstance(family.tiny, TinySpec) and family.tiny.image_processor[0]
    assert family.tiny.image_tokens > 0 and len(family.tiny.processed_size) == 2


def test_family_names_are_distinct():
    names = [f.name for f in FAMILIES.values()]
    assert len(set(names)) == len(names)


def test_unknown_model_type_is_unsupported_and_names_the_supported_ones():
    for query in ("bert", type("Config", (), {"model_type": "bert"})()):
        with pytest.raises(UnsupportedModel) as error:
            family_of(query)
        message = str(error.value)
        assert "'bert'" in message
        for model_type, family in FAMILIES.items():
            assert f"{family.name} ({model_type})" in message
    with pytest.raises(UnsupportedModel, match="^some/folder is a 'bert' model; hearlib supports LLaVA-1.5"):
        family_of("bert", source="some/folder")
    assert family_of("qwen2_vl") is FAMILIES["qwen2_vl"]
    assert family_of(type("Config", (), {"model_type": "internvl"})()) is FAMILIES["internvl"]


# ---------------------------------------------------------------------------------------
# the paths on each family's tiny model
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(FAMILIES))
def tiny(request, tiny_model_dir, random_images):
    """(family, model, processor, inputs of one image + the paper prompt)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = FAMILIES[request.param]
    folder = tiny_model_dir(request.param)
    processor = family.give_chat_template(AutoProcessor.from_pretrained(folder))
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PAPER_PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=random_images(1)[0], text=text, return_tensors="pt")
    return family, model, processor, inputs


def test_tiny_model_is_of_the_recorded_classes(tiny):
    family, model, processor, _ = tiny
    assert type(model).__name__ == family.model_class
    assert type(processor).__name__ == family.processor_class


def test_paths_resolve_to_the_expected_modules(tiny):
    family, model, processor, _ = tiny
    text = family.text_config_of(model.config)
    assert text is model.config.text_config
    decoder = family.decoder_of(model)
    assert isinstance(decoder, torch.nn.Module)
    # MllamaTextModel's embedding has 8 rows past the vocabulary (nn.Embedding(vocab_size + 8, ...))
    extra_rows = 8 if family.model_type == "mllama" else 0
    assert decoder.get_input_embeddings().weight.shape == (text.vocab_size + extra_rows, text.hidden_size)
    layers = family.layers_of(model)
    assert len(layers) == text.num_hidden_layers
    attentions = family.attention_modules(model)
    covered = family.covered_layers(model)       # a hybrid decoder's softmax-attention layers; else every layer
    assert len(attentions) == len(covered) >= 1
    assert family.hybrid or covered == list(range(text.num_hidden_layers))
    for index, attention in zip(covered, attentions):
        assert attention.layer_idx == index
        projection = family.output_projection_of(attention)
        assert isinstance(projection, torch.nn.Linear)
        assert (projection.in_features, projection.out_features) == (
            text.num_attention_heads * testing.HEAD_DIM, text.hidden_size)
    norm = family.final_norm_of(model)
    assert isinstance(norm, torch.nn.Module) and norm.weight.shape == (text.hidden_size,)
    lm_head = family.lm_head_of(model)
    # Nemotron-H Omni's top-level class leaves the unembedding to its causal LM (language_model.lm_head)
    output_embeddings = model.get_output_embeddings() or model.language_model.get_output_embeddings()
    assert isinstance(lm_head, torch.nn.Linear) and lm_head is output_embeddings
    assert lm_head.weight.shape == (text.vocab_size, text.hidden_size)
    # Gemma3Processor's image_token(_id) is the <start_of_image> placeholder, AyaVisionProcessor's and
    # Ovis2Processor's the <image> placeholder, PPChart2TableProcessor has none; the tokenizer's is the image token.
    # Molmo2Processor's (and its tokenizer's) is the <|image|> placeholder it expands to rows of <im_patch>
    image_token = (processor.tokenizer.image_token
                   if family.model_type in ("gemma3", "aya_vision", "ovis2", "pp_chart2table")
                   else "<im_patch>" if family.model_type == "molmo2"
                   else processor.image_token)
    # Blip2Processor's image_token is an AddedToken, whose str is its content
    assert family.image_token_id_of(model.config) == processor.tokenizer.convert_tokens_to_ids(str(image_token))


@torch.no_grad()
def test_the_forward_runs_through_the_recorded_modules(tiny):
    """One forward: each output projection runs once and gives its attention module's output,
    the final norm gives the decoder's output, and the lm_head turns that into the logits."""
    family, model, _, inputs = tiny
    calls, projected, attended, seen = [], {}, {}, {}
    handles = []
    for i, attention in enumerate(family.attention_modules(model)):
        def on_projection(module, args, out, i=i):
            calls.append(i)
            projected[i] = out
        handles.append(family.output_projection_of(attention).register_forward_hook(on_projection))
        handles.append(attention.register_forward_hook(lambda m, a, out, i=i: attended.update({i: out[0]})))
    handles.append(family.final_norm_of(model).register_forward_hook(lambda m, a, out: seen.update(norm=out)))
    handles.append(family.decoder_of(model).register_forward_hook(
        lambda m, a, out: seen.update(decoder=out.last_hidden_state)))
    try:
        logits = model(**inputs, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    assert calls == list(range(len(family.covered_layers(model))))
    for i in calls:
        torch.testing.assert_close(projected[i], attended[i], rtol=0, atol=0)
    torch.testing.assert_close(seen["norm"], seen["decoder"], rtol=0, atol=0)
    expected = family.lm_head_of(model)(seen["norm"])
    scale = family.logit_scale_of(model)                 # Cohere Compass; Aya Vision from transformers 5.25
    if scale is not None:
        expected = expected * scale
    cap = getattr(family.text_config_of(model.config), "final_logit_softcapping", None)
    if cap and family.model_type != "gemma3":       # Gemma 2 under PaliGemma caps the logits; Gemma 3 does not
        expected = torch.tanh(expected / cap) * cap
    torch.testing.assert_close(expected, logits)


def test_engine_and_loader_use_the_record(tiny, tiny_model_dir):
    from hearlib.method.loading import load_engine

    family = tiny[0]
    engine = load_engine(tiny_model_dir(family.model_type))
    assert engine.family is family
    assert engine.resolution == family.resolution
    assert engine.decoder is family.decoder_of(engine.model)
    assert engine.final_norm is family.final_norm_of(engine.model)
    assert engine.lm_head is family.lm_head_of(engine.model)
    assert engine.image_token_id == family.image_token_id_of(engine.model.config)
    assert family.text_config_of(engine.model.config)._attn_implementation == "hear"


# ---------------------------------------------------------------------------------------
# the consumers read the registry (a changed record changes what they do)
# ---------------------------------------------------------------------------------------
def test_engine_refuses_a_model_without_the_recorded_output_projection(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hearlib.method.engine import Engine

    folder = tiny_model_dir("llava")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder)
    monkeypatch.setitem(families.FAMILIES, "llava",
                        dataclasses.replace(FAMILIES["llava"], output_projection="dense"))
    with pytest.raises(UnsupportedModel, match="'dense'"):
        Engine(model, processor)


def _llava_unregistered(tiny_model_dir, monkeypatch):
    """The tiny LLaVA's model and processor, with 'llava' taken out of the registry."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dir("llava")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    monkeypatch.delitem(families.FAMILIES, "llava")
    return model, AutoProcessor.from_pretrained(folder)


def test_an_unregistered_model_type_of_standard_layout_runs_through_a_checked_derived_record(
        tiny_model_dir, random_images, monkeypatch):
    from hearlib.method.engine import Engine
    from hearlib.method.means import compute_means

    model, processor = _llava_unregistered(tiny_model_dir, monkeypatch)
    checked = []
    monkeypatch.setattr(Engine, "check_derived", lambda self, *a, _run=Engine.check_derived: (checked.append(1),
                                                                                                _run(self))[1])
    engine = Engine(model, processor)
    assert checked == [1] and engine.family.derived and engine.family.model_type == "llava"
    assert engine.family.decoder == "model.language_model" and engine.family.tiny is None
    images = random_images(3, seed=4)
    sample = engine.prepare(images[0], answer="dog")
    means = compute_means(engine, images[1:], progress=False)
    heads = np.random.default_rng(0).random((5, engine.n_total_heads)) < 0.5
    fast = engine.logits(sample, means, heads)
    assert np.abs(fast - engine.logits(sample, means, heads, method="literal")).max() <= 1e-4
    assert np.ptp(fast) > 1e-4
    with pytest.raises(UnsupportedModel, match="not registered .*image maps are unavailable"):
        geometry.image_token_layout(engine, sample)


def test_a_derived_record_that_fails_its_check_is_refused_with_what_failed(tiny_model_dir, monkeypatch):
    from hearlib.method.engine import Engine
    from hearlib.method.fastpath import FastPlan

    model, processor = _llava_unregistered(tiny_model_dir, monkeypatch)
    attend = FastPlan._attend
    monkeypatch.setattr(FastPlan, "_attend", lambda self, *a, **k: attend(self, *a, **k) + 1e-2)
    with pytest.raises(UnsupportedModel, match="'?llava'? is not registered .*fast and literal ablation differ by"):
        Engine(model, processor)
    monkeypatch.setattr(FastPlan, "_attend", attend)
    monkeypatch.setitem(families.TRANSFORMERS_DECODER, "decoder", "model.text_model")
    with pytest.raises(UnsupportedModel, match="has no 'model.text_model'"):
        Engine(model, processor)


@pytest.mark.parametrize("model_type, reason", [("evolla", "image read by cross-attention"),
                                                 ("dots3_note", "sparse key selection"),
                                                 ("bert", "maps no image-text-to-text class")])
def test_model_types_hear_does_not_apply_to_are_refused_with_the_reason(model_type, reason):
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type)
    except Exception:       # noqa: BLE001 - a config class that needs arguments: a stand-in with the type
        config = type("Config", (), {"model_type": model_type})()
    with pytest.raises(UnsupportedModel, match=reason):
        family_of(config)


def test_image_token_layout_dispatches_through_the_record(tiny_model_dir, random_images, monkeypatch):
    from hearlib.method.loading import load_engine

    engine = load_engine(tiny_model_dir("qwen2_vl"))
    sample = engine.prepare(random_images(1)[0], answer="dog")
    calls = []

    def transposed(config, processor, sample, width, height):
        calls.append((width, height))
        panels, non_spatial = FAMILIES["qwen2_vl"].layout(config, processor, sample, width, height)
        return [geometry.Panel(p.name, np.ascontiguousarray(p.tokens.T), p.box) for p in panels], non_spatial

    monkeypatch.setattr(engine, "family", dataclasses.replace(FAMILIES["qwen2_vl"], layout=transposed))
    layout = geometry.image_token_layout(engine, sample)
    assert calls == [engine.resolution]
    assert layout.panels[0].tokens[0, 1] == layout.panels[0].shape[1]     # row-major grid transposed


def test_build_tiny_derives_from_the_recorded_spec(tmp_path, monkeypatch):
    """build_tiny reads the family's spec from the record: a changed spec changes the model it writes."""
    import json

    record = FAMILIES["llava"]
    spec = dataclasses.replace(record.tiny, text={"num_hidden_layers": 3}, config={**record.tiny.config,
                                                                                    "image_seq_length": 7})
    monkeypatch.setitem(families.FAMILIES, "llava", dataclasses.replace(record, tiny=spec))
    config = json.loads((testing.build_tiny("llava", tmp_path / "tiny") / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 3 and config["image_seq_length"] == 7
    assert config["text_config"]["hidden_size"] == testing.SIZES["text"]["hidden_size"]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _hearlib_imports(module) -> set[str]:
    """The hearlib modules ``module`` imports anywhere in its source (functions included)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hearlib"):
            for alias in node.names:   # `from hearlib.pkg import module` names the module
                name = f"{node.module}.{alias.name}"
                names.add(name if _is_module(name) else node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("hearlib"))
    return names


def test_the_records_are_data_that_import_nothing_built_on_them():
    """registry -> geometry, refusals (data); the lineage files import the registry, and tiny and coverage
    read the records, never the other way round, so adding a family cannot close an import circle."""
    from hearlib.families import refusals, templates
    from hearlib.paper import coverage

    assert _hearlib_imports(refusals) == set() and _hearlib_imports(templates) == set()
    assert _hearlib_imports(geometry) <= {"hearlib.errors"}
    assert _hearlib_imports(families) <= {"hearlib.families.geometry", "hearlib.errors", "hearlib.families.refusals"}
    for name in LINEAGES:
        imported = _hearlib_imports(importlib.import_module(f"hearlib.families.{name}"))
        assert "hearlib.families.registry" in imported
        assert not imported & {"hearlib.families.tiny", "hearlib.paper.coverage", "hearlib.method.engine"}, name
    assert "hearlib.families.registry" in _hearlib_imports(testing) and "hearlib.families.tiny" in _hearlib_imports(coverage)
    assert coverage.REASONS is refusals.REASONS


def test_a_family_that_needs_a_newer_transformers_is_refused_with_the_release_and_why(monkeypatch):
    """``Family.requires``: on an older release than the family's oldest, loading it is refused with that
    release and the reason, and ``coverage --check`` (.ci/versions) reports it as needing that release."""
    from hearlib.errors import UnsupportedModel
    from hearlib.paper import coverage

    monkeypatch.setitem(families.FAMILIES, "llava", dataclasses.replace(
        FAMILIES["llava"], requires=("99.0", "its wrapper gained the layout in 99.0")))
    with pytest.raises(UnsupportedModel, match=r"needs transformers >= 99.0 \(its wrapper gained the layout"):
        family_of("llava")
    assert coverage.check_release(lambda t: "checked")["llava"].startswith("LLaVA-1.5 needs transformers >= 99.0")
