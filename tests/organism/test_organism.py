"""The model organism: tokenizer/processor/chat template, a short training run, and the
committed organisms (plain Auto classes, generate, held-out accuracy >= 95% per style)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hearlib.organism import model as O
from hearlib.organism import scenes
from hearlib.paths import MODELS
from hearlib.prompts import COLOR_PROMPT, KIND_PROMPT, PAPER_PROMPT

COMMITTED = [name for name in O.SIZES if (MODELS / name / "model.safetensors").exists()]
needs_organisms = pytest.mark.skipif(
    len(COMMITTED) < len(O.SIZES),
    reason=f"committed organisms not found under {MODELS} (run `make model` to train them)")
# the staged organism (docs/ORGANISM.md, `make model-staged`), held to the same standard when committed
# and with stage 5 (`make model-tuned`: the tower unfrozen at the end), saved as <size>-tuned
STAGED = [name for size in O.RECIPE_SIZES for name in (size, f"{size}-tuned")
          if (MODELS / name / "model.safetensors").exists()]
HELDOUT_SEED = 4242          # never used in training (training uses scenes.TRAIN_SEED = 0)
PER_STYLE = 300              # the bar is read on as many scenes per style as the training checks use (60 of
                             # seed 4242 rated hear-organism-r8-tuned's real photos 100%, 300 rate them 89%)


def _size(name):
    """The organism's size; ``<size>-tuned`` is that size after stage 5."""
    return O.resolve_size(name.removesuffix("-tuned"))


def _messages(prompt):
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def test_the_families_know_the_organisms_words_and_template():
    """hearlib.families never imports the organism: its LLaVA template is the organism's, its test
    vocabulary's default scene words and prompts are the organism's answer words and questions, and
    a committed organism's saved template is that template."""
    from hearlib.families.templates import LLAVA_TEMPLATE
    from hearlib.families.vocabulary import PROMPTS, SCENE_WORDS, vocabulary

    assert list(SCENE_WORDS) == O.answer_vocabulary()
    assert list(PROMPTS) == [p for prompts, _ in O.QUESTIONS.values() for p in prompts]
    assert vocabulary(O.answer_vocabulary()) == vocabulary()
    assert O.build_processor(O.build_tokenizer()).chat_template == LLAVA_TEMPLATE
    for name in COMMITTED:
        assert (MODELS / name / "chat_template.jinja").read_text() == LLAVA_TEMPLATE


def test_tokenizer_and_processor():
    tok = O.build_tokenizer()
    proc = O.build_processor(tok)
    for word in O.answer_vocabulary():
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] != tok.unk_token_id
    for prompts, _ in O.QUESTIONS.values():
        for p in prompts:
            text = proc.apply_chat_template(_messages(p), add_generation_prompt=True)
            assert text == f"USER: <image>\n{p} ASSISTANT:"
            assert tok.unk_token_id not in tok(text)["input_ids"]
    assert len(O.QUESTIONS["object"][0]) == 10
    text = O.prompt_text(PAPER_PROMPT)
    image = scenes.render(scenes.make_scene(HELDOUT_SEED, 0), "real")
    inputs = proc(text=text, images=image, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[:3] == ["<s>", "USER", ":"] and tokens[-2:] == ["ASSISTANT", ":"]
    assert ids.count(tok.convert_tokens_to_ids("<image>")) == O.NUM_IMAGE_TOKENS == 64
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    # the trainer's own preprocessing is the processor's
    from hearlib.organism.data import normalize
    mine = normalize(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None])
    assert torch.allclose(mine, inputs["pixel_values"], atol=1e-5)


def test_short_training_run_lowers_the_loss(tmp_path):
    from hearlib.organism.train import train_all
    torch.set_num_threads(2)
    scenes.generate(tmp_path / "data", 40, seed=scenes.TRAIN_SEED, progress=False)
    res = train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, vision_steps=40,
                    decoder_steps={"hear-organism-s": 40}, holdout_frac=0.25, progress=False,
                    save=True, eval_alt_subset=4, vision_batch=32, decoder_batch=16)
    for key in ("vision", "hear-organism-s"):
        log = res["logs"][key]
        assert np.mean(log[-8:]) < 0.8 * np.mean(log[:8]), (key, log[:8], log[-8:])
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder = tmp_path / "models" / "hear-organism-s"
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert isinstance(AutoProcessor.from_pretrained(folder).tokenizer.convert_tokens_to_ids("cat"), int)


def test_train_command_on_a_plain_domainnet_folder(tmp_path, capsys):
    """`python -m hearlib train` on any <domain>/<class>/<image> folder (no labels file): object
    naming only, the class folders as answer words, held-out accuracy printed per domain."""
    import shutil

    from hearlib.cli import main
    scenes.generate(tmp_path / "gen", 24, seed=scenes.TRAIN_SEED, progress=False)
    plain = tmp_path / "plain"
    shutil.copytree(tmp_path / "gen" / "domains", plain)          # the layout alone, no labels.json
    code = main(["train", "--data", str(plain), "--out", str(tmp_path / "models"), "--size", "s",
                 "--vision-steps", "4", "--decoder-steps", "4", "--threads", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "questions: object;" in out
    table = out[out.index("held-out accuracy"):]
    assert all(d in table.splitlines()[1] for d in scenes.STYLES)       # one column per domain
    assert "color" not in table and "position" not in table
    from transformers import AutoProcessor
    tok = AutoProcessor.from_pretrained(tmp_path / "models" / "hear-organism-s").tokenizer
    assert all(tok.convert_tokens_to_ids(c) != tok.unk_token_id for c in {p.name for p in plain.glob("*/*")})


# hear-organism-r8 (staged recipe, seed 0) misses the bar: held-out object accuracy 90.0 / 86.7 / 92.7% here
# (clipart / real / sketch; 92.0 / 87.3 / 92.7% in training_stages.json); issue 16 asks for >= 95%. Strict:
# passing would fail. After stage 5 (make model-tuned, 3000 steps) hear-organism-r8-tuned passes: 99.0 / 96.7 /
# 98.7% here (600 steps of stage 5 gave 92.0 / 89.3 / 95.7%, 1500 gave 96.7 / 92.7 / 96.7%).
BELOW_BAR = pytest.mark.xfail(strict=True, raises=AssertionError, reason="hear-organism-r8 answers 87-93% of held-out objects (< 95%)")


def _bar(name):
    return pytest.param(name, marks=BELOW_BAR) if name in O.RECIPE_SIZES else name


@needs_organisms
@pytest.mark.parametrize("name", list(O.SIZES) + [_bar(n) for n in STAGED])
def test_committed_organism_answers_heldout_scenes(name):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    torch.set_num_threads(2)
    folder = MODELS / name
    proc = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    size = _size(name)
    cfg = model.config
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert (cfg.text_config.num_hidden_layers, cfg.text_config.num_attention_heads) == (size.layers, size.heads)
    assert cfg.projector_hidden_act == "gelu" and cfg.vision_feature_select_strategy == "default"
    text = proc.apply_chat_template(_messages(PAPER_PROMPT), add_generation_prompt=True)
    assert text == O.prompt_text(PAPER_PROMPT)
    found = [scenes.make_scene(HELDOUT_SEED, i) for i in range(PER_STYLE)]
    for style in scenes.STYLES:
        pred = []
        for start in range(0, len(found), 100):
            images = [scenes.render(s, style) for s in found[start:start + 100]]
            inputs = proc(text=[text] * len(images), images=images, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits[:, -1]
            pred += proc.tokenizer.convert_ids_to_tokens(logits.argmax(-1).tolist())
        acc = np.mean([p == s.category for p, s in zip(pred, found)])
        assert acc >= 0.95, f"{name} {style}: held-out object accuracy {acc:.2%} < 95%"
    # generate() gives the answer word then </s>; the answer depends on the question
    scene = found[0]
    image = scenes.render(scene, "real")
    for prompt, want in ((PAPER_PROMPT, scene.category), (COLOR_PROMPT, scene.color),
                         (KIND_PROMPT, scene.supercategory)):
        inputs = proc(text=O.prompt_text(prompt), images=image, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        new = proc.tokenizer.convert_ids_to_tokens(out[0, inputs["input_ids"].shape[1]:].tolist())
        assert new[0] == want, (prompt, new, want)
        assert "</s>" in new[:2]


@needs_organisms
@pytest.mark.parametrize("name", list(O.SIZES) + STAGED)
def test_committed_organism_runs_through_the_engine_fast_equals_literal(name):
    """The organism goes through the same engine as a 7B checkpoint: the fast ablation gives the
    literal one's logits for random head, text-query and image-token masks."""
    from hearlib.method.means import compute_means
    from hearlib.method.loading import load_engine

    torch.set_num_threads(2)
    engine = load_engine(MODELS / name)
    assert (engine.n_layers, engine.n_heads) == (_size(name).layers, _size(name).heads)
    references = [scenes.render(scenes.make_scene(HELDOUT_SEED, 100 + i), "real") for i in range(6)]
    means = compute_means(engine, references, progress=False)
    scene = scenes.make_scene(HELDOUT_SEED, 1)
    sample = engine.prepare(scenes.render(scene, "real"), answer=scene.category)
    assert sample.n_image == O.NUM_IMAGE_TOKENS
    record = engine.record(sample)
    assert engine.tokenizer.convert_ids_to_tokens([record.predicted_id])[0] == scene.category
    rng = np.random.default_rng(0)
    M = 6
    heads = rng.random((M, engine.n_total_heads)) < 0.3
    text = rng.random((M, sample.n_text)) < 0.5
    image = rng.random((M, sample.n_image)) < 0.5
    fast = engine.logits(sample, means, heads, text, image, method="fast")
    literal = engine.logits(sample, means, heads, text, image, method="literal")
    np.testing.assert_allclose(fast, literal, atol=1e-4, rtol=0)
    intact = engine.logits(sample, means, np.ones((1, engine.n_total_heads), bool), method="fast")
    assert abs(intact[0] - record.logit) <= 1e-5
    assert np.ptp(fast) > 1e-3, "the masks should move the answer logit"


def test_decoder_from_continues_stage_b_from_a_finished_organism_and_refuses_another_kind(tmp_path):
    """``hearlib train --decoder-from`` (make model-patches-tuned): the projector, decoder and LM head
    start as the source's (0 further steps leave them equal), and a source read at another tower
    layer, or no organism at all, is refused with one line."""
    from transformers import AutoModelForImageTextToText

    from hearlib.errors import UserError
    from hearlib.organism.train import train_all
    torch.set_num_threads(1)
    scenes.generate(tmp_path / "data", 24, seed=scenes.TRAIN_SEED, progress=False)
    common = dict(holdout_frac=0.25, progress=False, eval_alt_subset=2, vision_batch=16, decoder_batch=8)
    train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, vision_steps=4, feature_layer=0,
              decoder_steps={"hear-organism-s": 4}, **common)
    source = tmp_path / "models" / "hear-organism-s"
    train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, vision_steps=0, vision_from=source,
              feature_layer=0, decoder_steps={"hear-organism-s": 0}, decoder_from=source, name="continued",
              **common)
    a = AutoModelForImageTextToText.from_pretrained(source).state_dict()
    b = AutoModelForImageTextToText.from_pretrained(tmp_path / "models" / "continued").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="reads tower layer"):
        train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, vision_steps=0, vision_from=source,
                  feature_layer=-1, decoder_steps={"hear-organism-s": 0}, decoder_from=source, name="x", **common)
    with pytest.raises(UserError, match="no organism there"):
        train_all(tmp_path / "data", tmp_path / "models", ["s"], seed=0, vision_steps=0, vision_from=source,
                  feature_layer=0, decoder_steps={"hear-organism-s": 0}, decoder_from=tmp_path, name="x", **common)


def test_a_tower_trained_without_class_labels_never_reads_them(tmp_path):
    """Design D1's stage A (`hearlib train --tower-targets color,position`): heads for colour and
    position only, the dense head on colour; the class labels are not read at all (they are
    replaced by words no vocabulary holds, which would raise if looked up); unknown targets are refused."""
    from hearlib.errors import UserError
    from hearlib.organism.data import Data, load_images, prepare_data
    from hearlib.organism.train import train_vision

    torch.set_num_threads(1)
    scenes.generate(tmp_path / "data", 12, seed=scenes.TRAIN_SEED, progress=False)
    train, _, questions, vocab = prepare_data(tmp_path / "data", None, 0, 0.25, None, False)
    data = Data(train, load_images(train, False), questions)
    data.labels["object"] = [f"never-seen-{i}" for i in range(len(train))]
    model = O.build_model(O.resolve_size("s"), O.build_tokenizer(), 0)
    log = []
    heads = train_vision(model.model.vision_tower, data, vocab, steps=3, batch=8, progress=False, log=log,
                         targets=("color", "position"))
    assert set(heads.heads) == {"color", "position"} and len(log) == 3
    assert heads.dense.out_features == len(vocab["color"]) + 1
    with pytest.raises(UserError, match="tower targets"):
        train_vision(model.model.vision_tower, data, vocab, steps=1, progress=False, targets=("shape",))
