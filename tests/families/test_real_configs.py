"""Random-weight models of the real geometry of published checkpoints.

LLaVA-1.5-7B, Qwen2-VL-2B-Instruct, Qwen2.5-VL-3B-Instruct, Qwen3-VL-4B-Instruct,
SmolVLM-256M-Instruct (model type ``idefics3``), Gemma-3-4B-it and Qwen3.5-0.8B (with stand-in tokenizers,
see STANDIN below), the thinker of Qwen2.5-Omni-7B and BLIP-2 OPT-2.7b (model type ``blip-2``: 32 Q-Former
queries before the text of an OPT decoder), built from the real hub files in
tests/data/hub (config, processor, tokenizer, chat template; sources and licences in
tests/data/hub/NOTICE.md) by :func:`hearlib.families.real.real_config_model`, with decoder and vision
depth cut to 2 layers (width, query and key/value heads, head size, RoPE / M-RoPE and vocabulary
as published; the decoder MLP of the larger ones is narrowed to 1024 to fit a CPU, see BUILD). Qwen3.5's
hybrid decoder keeps its first 4 layers, three Gated DeltaNet layers and one softmax-attention layer, the
one HeAr covers (docs/METHOD.md, "Hybrid decoders").
The engine must run them exactly: fast = literal, intact = the plain transformers forward, answer
words tokenized as the tokenizer itself does after the chat prompt, and ``python -m hearlib run``
end to end.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hearlib.method.loading import load_engine
from hearlib.families.blip_2 import QUERY_TEMPLATE
from hearlib.families.real import REAL_HUB, REAL_MODELS, STANDIN_NOTE, has_real_tokenizer, real_config_model

pytestmark = pytest.mark.slow          # about two minutes a model on a shared 2-core CPU machine

# depth cut per model; N = layers × the real query heads. The decoder MLP (which hearlib never
# touches) is narrowed to 1024 where the published width would make the CPU build slow.
BUILD = {"llava-1.5-7b": dict(layers=2, vision_layers=2, intermediate_size=1024),
         "qwen2-vl-2b": dict(layers=2, vision_layers=2),
         "qwen2.5-vl-3b": dict(layers=2, vision_layers=2, intermediate_size=1024),
         "qwen3-vl-4b": dict(layers=2, vision_layers=2, intermediate_size=1024),
         "smolvlm-256m": dict(layers=2, vision_layers=2),
         "gemma-3-4b": dict(layers=2, vision_layers=2, intermediate_size=1024),
         "qwen3.5-0.8b": dict(layers=4, vision_layers=2, intermediate_size=1024),
         "qwen2.5-omni-7b": dict(layers=2, vision_layers=2, intermediate_size=1024),
         "blip2-opt-2.7b": dict(layers=2, vision_layers=2, intermediate_size=1024)}   # + the Q-Former's depth
# image tokens of one 640 × 480 photo at the input size hearlib runs the family at (Family.resolution):
# LLaVA-1.5 one 24 × 24 grid; Qwen2-VL / Qwen2.5-VL at 448 × 448 16 × 16; Qwen3-VL (patch 16) at 448 × 448
# 14 × 14; SmolVLM-256M (idefics3 record, 364 × 364): the processor resizes the longest edge to 2048, so
# 4 × 4 tiles of 512 px + the global image, 17 views × 64 tokens (pixel shuffle 4 on 32 × 32 patches);
# Gemma 3: SigLIP at 896 px pooled to 16 × 16; Qwen3.5 (patch 16, 2 × 2 merge) at 448 × 448 14 × 14;
# the Qwen2.5-Omni thinker (Qwen2.5-VL's tower: patch 14, 2 × 2 merge) at 448 × 448 16 × 16; BLIP-2: the
# processor's num_query_tokens (processor_config.json) <image> tokens at 224 × 224, whatever the image.
IMAGE_TOKENS = {"llava-1.5-7b": 576, "qwen2-vl-2b": 256, "qwen2.5-vl-3b": 256, "qwen3-vl-4b": 196,
                "smolvlm-256m": 1088, "gemma-3-4b": 256, "qwen3.5-0.8b": 196, "qwen2.5-omni-7b": 256,
                "blip2-opt-2.7b": 32}
# Gemma 3's tokenizer files (tokenizer.json 33 MB, tokenizer.model 4.7 MB) and Qwen3.5's (tokenizer.json and
# vocab.json, each over 4 MB) are in no public copy that could be retrieved whole: their models run with the real
# config, processor config and chat template and a STAND-IN tokenizer (hearlib.families.real.standin_tokenizer:
# every special/added token at its real id, test words elsewhere), so the tests of how words are tokenized are
# skipped for them; everything else is checked as for the others.
STANDIN = sorted(name for name in BUILD if not has_real_tokenizer(name))


def _needs_real_tokenizer(name):
    if name in STANDIN:
        pytest.skip(f"{name}: the tokenizer is a stand-in, not the real one (tests/data/hub has no tokenizer files)")
ANSWERS = ("cat", "fire hydrant", "teddy bear")
PHOTO = (640, 480)


def test_every_model_with_real_hub_files_is_run_here():
    """hearlib.paper.coverage.real_files (the 'real geometry' column of docs/MODELS.md) lists REAL_MODELS."""
    assert set(BUILD) == set(REAL_MODELS) == set(IMAGE_TOKENS)


def _photos(n, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((PHOTO[1], PHOTO[0], 3)) * 255).astype("uint8")) for _ in range(n)]


@pytest.fixture(scope="module", params=list(BUILD))
def real(request, tmp_path_factory):
    """A random-weight model of the real geometry, built once per model; its folder (1.6-2.9 GB of
    full-vocabulary embeddings) is removed when the model's tests are done, so a run holds one at a time."""
    from hearlib.method.means import compute_means

    name = request.param
    folder = real_config_model(name, tmp_path_factory.mktemp(f"real-{name}"), **BUILD[name])
    try:
        engine = load_engine(folder)
        images = _photos(2, seed=5)
        means = compute_means(engine, images[1:], progress=False)      # one reference image: one forward
        means_file = means.save(tmp_path_factory.mktemp(f"means-{name}") / "means.safetensors")
        sample = engine.prepare(images[0], answer="cat")
        yield dict(name=name, folder=folder, engine=engine, images=images, means=means, means_file=means_file,
                   sample=sample, hub=REAL_HUB / REAL_MODELS[name])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _processor_files(real) -> Path:
    """Where the real processor is loaded from on its own: the hub folder, or for a stand-in tokenizer
    the built folder (the same processor config and chat template, with the stand-in's tokenizer files)."""
    return real["folder"] if real["name"] in STANDIN else real["hub"]


def _independent_inputs(hub, resolution, image, prompt):
    """The real processor and chat template, loaded from the hub files, on their own."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(hub)
    if processor.chat_template is None:                   # BLIP-2's hub files have none: the model card's prompt
        processor.chat_template = QUERY_TEMPLATE
    if resolution is not None:                            # hearlib's fixed input size (Family.resolution)
        image = image.resize(resolution, Image.BICUBIC)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # tokenized by the processor's own chat path (which, e.g., gives a template that writes <bos> no second one)
    messages[0]["content"][0]["image"] = image.convert("RGB")
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    return inputs, processor, text


def _published(hub: Path):
    """The hub's config of the image-text-to-text model (an Omni checkpoint's: its thinker's)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(hub)
    return getattr(config, "thinker_config", config)


def _covered_layers(real) -> int:
    """Decoder layers HeAr covers in the built model: all of them, or in a hybrid decoder the softmax-attention
    ones among the first BUILD layers (``layer_types``: not Qwen3.5's ``linear_attention``)."""
    layers = BUILD[real["name"]]["layers"]
    kinds = getattr(_published(real["hub"]).text_config, "layer_types", None) or ["full_attention"] * layers
    return sum(kind != "linear_attention" for kind in kinds[:layers])


def test_the_model_has_the_real_geometry(real):
    engine, sample = real["engine"], real["sample"]
    published = _published(real["hub"])
    text = published.text_config
    assert engine.n_layers == _covered_layers(real) >= 1
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads   # OPT: no grouped heads
    assert (engine.n_heads, engine.n_kv_heads) == (text.num_attention_heads, kv_heads)
    assert engine.head_dim == (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
    built = engine.model.config.text_config
    assert (built.hidden_size, built.vocab_size) == (text.hidden_size, text.vocab_size)
    # M-RoPE sections for Qwen2-VL; OPT has learned positions and no RoPE
    assert getattr(built, "rope_parameters", None) == getattr(text, "rope_parameters", None)
    assert engine.lm_head.weight.shape == (text.vocab_size, text.hidden_size)
    assert engine.image_token_id == published.image_token_id
    assert engine.n_total_heads == _covered_layers(real) * text.num_attention_heads
    # the processor and chat template are the real ones: the same ids as the hub files give
    inputs, _, _ = _independent_inputs(_processor_files(real), engine.resolution, real["images"][0], sample.prompt)
    assert torch.equal(sample.inputs["input_ids"].cpu(), inputs["input_ids"])
    assert sample.n_image == IMAGE_TOKENS[real["name"]]
    assert sample.text_start == int(sample.image_positions[-1]) + 1 and sample.n_text > 5


def test_the_tokenizer_is_the_real_one_or_a_declared_stand_in(real):
    folder = real["folder"]
    if real["name"] in STANDIN:
        assert (folder / STANDIN_NOTE).is_file() and "STAND-IN" in (folder / STANDIN_NOTE).read_text()
        real_config = json.loads((real["hub"] / "tokenizer_config.json").read_text())
        tokenizer = real["engine"].tokenizer
        for token_id, token in real_config["added_tokens_decoder"].items():   # every listed token at its real id
            assert tokenizer.convert_tokens_to_ids(token["content"]) == int(token_id)
        for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
            if real_config.get(role) is not None:   # one the config leaves out is the tokenizer class's default
                assert getattr(tokenizer, role) == real_config[role]
    else:
        assert not (folder / STANDIN_NOTE).exists()


def test_fast_equals_literal(real):
    engine, means, sample = real["engine"], real["means"], real["sample"]
    rng = np.random.default_rng(0)
    heads = rng.random((2, engine.n_total_heads)) > 0.5
    text = rng.random((2, sample.n_text)) > 0.3
    image = rng.random((2, sample.n_image)) > 0.3
    text[1], image[1] = True, True                                     # one head-only mask
    fast = engine.logits(sample, means, heads, text, image, method="fast", batch_size=2)
    literal = engine.logits(sample, means, heads, text, image, method="literal")
    assert np.abs(fast - literal).max() <= 1e-4
    assert np.ptp(literal) > 1e-3, "the masks must actually change the logit"


def test_intact_is_the_plain_transformers_forward(real):
    """hearlib's intact logits against a fresh, never patched copy of the model."""
    from transformers import AutoModelForImageTextToText

    engine, means, sample = real["engine"], real["means"], real["sample"]
    inputs, processor, _ = _independent_inputs(_processor_files(real), engine.resolution, real["images"][0], sample.prompt)
    plain = AutoModelForImageTextToText.from_pretrained(real["folder"], dtype=torch.float32).eval()
    try:
        with torch.no_grad():
            logits = plain(**inputs).logits[0, -1].double()
    finally:
        del plain
    answer_id = processor.tokenizer.convert_tokens_to_ids(sample.answer_tokens[0])
    expected = float(logits[answer_id] - logits.mean())
    record = engine.record(sample)
    assert abs(record.logit - expected) <= 1e-5 * max(1.0, abs(expected))
    assert record.predicted_id == int(logits.argmax())
    intact = engine.logits(sample, means, np.ones((1, engine.n_total_heads), bool), method="fast")
    assert abs(intact[0] - expected) <= 1e-5 * max(1.0, abs(expected))


def _vocabulary(hub: Path) -> dict[str, int]:
    """token string -> id, read from the hub files themselves (not through transformers)."""
    if (hub / "tokenizer.json").is_file():
        data = json.loads((hub / "tokenizer.json").read_text())
        vocab = dict(data["model"]["vocab"])
        vocab.update({t["content"]: t["id"] for t in data["added_tokens"]})
        return vocab
    vocab = json.loads((hub / "vocab.json").read_text())
    if (hub / "added_tokens.json").is_file():
        vocab.update(json.loads((hub / "added_tokens.json").read_text()))
    else:                                                   # the added tokens listed in the tokenizer config
        added = json.loads((hub / "tokenizer_config.json").read_text())["added_tokens_decoder"]
        vocab.update({t["content"]: int(i) for i, t in added.items()})
    return vocab


@pytest.mark.parametrize("answer", ANSWERS)
def test_answer_tokens_are_the_tokenizers_own(real, answer):
    _needs_real_tokenizer(real["name"])
    engine = real["engine"]
    sample = engine.prepare(real["images"][0], answer=answer)
    vocab = _vocabulary(real["hub"])
    ids = [vocab[t] for t in sample.answer_tokens]
    assert sample.answer_id == ids[0]
    # the tokens spell the answer with the word boundary the model emits after the chat prompt:
    # a space after LLaVA's "ASSISTANT:" (SentencePiece "▁"), SmolVLM's "Assistant:" and BLIP-2's "Answer:"
    # (byte-level "Ġ"), none after Qwen's "assistant\n" ("Ġ" inside)
    chat = engine.chat_text(None)
    space = "▁" if (real["hub"] / "tokenizer.model").is_file() else "Ġ"
    boundary = "" if chat.endswith("\n") else " "
    spelled = (space if boundary else "") + answer.replace(" ", space)
    assert "".join(sample.answer_tokens) == spelled
    if " " not in answer and spelled in vocab:
        assert sample.answer_tokens == [spelled]                       # a whole word in the vocabulary
    # and they are what the tokenizer gives for the answer right after the chat prompt
    tokenizer = engine.tokenizer
    prompt_ids = tokenizer(chat, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(chat + boundary + answer, add_special_tokens=False)["input_ids"]
    assert full_ids == prompt_ids + ids
    assert tokenizer.decode(full_ids[len(prompt_ids):]).strip() == answer
    # the prompt ids the model sees end where the answer begins; the first may be a marker that the
    # processor writes to close the image block (Idefics3's <fake_token_around_image>), which the chat
    # text holds only as its one image placeholder, or the BOS the tokenizer writes after it (BLIP-2's </s>)
    seen = sample.inputs["input_ids"][0, sample.text_start:].tolist()
    if seen != prompt_ids[len(prompt_ids) - len(seen):]:
        assert seen[0] in tokenizer.added_tokens_decoder and seen[0] != engine.image_token_id
        seen = seen[1:]
    assert seen == prompt_ids[len(prompt_ids) - len(seen):]


def test_answer_problem_on_the_real_tokenizers(real):
    _needs_real_tokenizer(real["name"])
    engine = real["engine"]
    for answer in ANSWERS + ("xylophonequux",):       # byte fallback / byte-level BPE: any word
        assert engine.answer_problem(answer) is None
    assert "non-empty" in engine.answer_problem("  ")
    assert "non-empty" in engine.answer_problem(None)


def _coco_2017(root: Path, images) -> dict[str, str]:
    """A COCO 2017 layout (annotations/instances_val2017.json beside val2017/): one main object each."""
    names = {1: "cat", 2: "fire hydrant", 3: "teddy bear"}
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    entries, anns, labels = [], [], {}
    for i, (image, cat) in enumerate(zip(images, names), start=1):
        file = f"{i:012d}.png"                           # lossless: the pixels of ``image`` exactly
        image.save(root / "val2017" / file)
        w, h = image.size
        entries.append({"id": i, "file_name": file, "width": w, "height": h})
        anns.append({"id": 10 * i, "image_id": i, "category_id": cat, "iscrowd": 0, "area": 0.3 * w * h,
                     "bbox": [0, 0, w / 2, h / 2], "segmentation": [[0, 0, w / 2, 0, w / 2, h / 2]]})
        labels[str(i)] = names[cat]
    categories = [{"id": k, "name": v, "supercategory": "thing"} for k, v in names.items()]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": entries, "annotations": anns, "categories": categories}))
    return labels


def test_hearlib_run_end_to_end(real, tmp_path):
    from hearlib.records.store import Store

    engine = real["engine"]
    # the cat is the fixture's sample image, whose unablated forward the other tests already ran
    labels = _coco_2017(tmp_path / "coco", real["images"][:1] + _photos(2, seed=9))
    out = tmp_path / "store"
    command = [sys.executable, "-m", "hearlib", "run", "--model", str(real["folder"]), "--data",
               str(tmp_path / "coco"), "--out", str(out), "--stages", "attribution", "--n-samples", "3",
               "--n-masks", "20", "--batch-size", "20", "--means", str(real["means_file"]), "--include-wrong",
               "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = Store(out)
    assert store.summary()["failed"] == 0 and store.summary()["skipped"] == 0
    heads = engine.n_heads
    n = _covered_layers(real) * heads                                    # N = covered layers × heads
    keys = [k for k in store.keys() if "/attribution-" in k]
    assert sorted(store.get(k).meta["label"] for k in keys) == sorted(labels.values())
    for key in keys:
        record = store.get(key)
        meta, arrays = record.meta, record.arrays
        assert arrays["masks"].shape == (20, n) and arrays["theta"].shape == (n,)
        assert arrays["image_attention"].shape == (meta["n_layers"], meta["n_heads"]) == (n // heads, heads)
        assert meta["n_image"] == IMAGE_TOKENS[real["name"]]
        sample = engine.prepare(meta["path"], answer=meta["label"])
        assert meta["answer_tokens"] == sample.answer_tokens and meta["answer_id"] == sample.answer_id
    # the stored logits are what this process's engine computes for the same image and masks
    cat = next(store.get(k) for k in keys if store.get(k).meta["label"] == "cat")
    np.testing.assert_allclose(engine.logits(real["sample"], real["means"], cat.arrays["masks"][:4]),
                               cat.arrays["logits"][:4], atol=1e-4)
    assert cat.meta["logit_unablated"] == pytest.approx(engine.record(real["sample"]).logit, abs=1e-4)
    assert any(len(store.get(k).meta["answer_tokens"]) > 1 for k in keys)  # "fire hydrant", "teddy bear"
