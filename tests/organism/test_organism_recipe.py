"""The staged organism recipe (hearlib.organism.recipe, issue 16): the text corpus, each stage's
held-out check against an independent computation, resume after an interruption (bit for bit),
skipping finished stages, and the saved model reloading with plain Auto* classes. Tiny budgets."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hearlib.organism import model as O
from hearlib.organism import checkpoints as C
from hearlib.organism import recipe as R
from hearlib.organism import staged as S
from hearlib.organism import scenes
from hearlib.prompts import PAPER_PROMPT

TINY = dict(size="s", text_docs=200, text_batch=8, clip_batch=16, align_batch=8, instruct_batch=8,
            heldout_images=6, save_every=100)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    scenes.generate(root / "train", 24, seed=scenes.TRAIN_SEED, progress=False)
    scenes.generate(root / "held", 6, seed=4242, progress=False)
    return root


def test_retrieval_accuracy_and_perplexity_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0, 0.2],      # row 0 -> 0: hit
                        [0.8, 0.1, 0.0, 0.2],      # row 1 -> 0: miss ("b" != "a")
                        [0.1, 0.2, 0.3, 0.9],      # row 2 -> 3: same text as 2 ("c"): hit
                        [0.0, 0.5, 0.1, 0.2]])     # row 3 -> 1: miss
    assert R.retrieval_accuracy(sim, ["a", "b", "c", "c"]) == 0.5
    nll = torch.tensor([0.5, 1.0, 2.5], dtype=torch.float64)
    assert math.isclose(R.perplexity(float(nll.sum()), 3), math.exp(float(nll.mean())), rel_tol=1e-12)


def test_corpus_answers_are_in_context_and_in_vocabulary():
    docs = R.corpus(scenes.TRAIN_SEED, 300)
    assert docs == R.corpus(scenes.TRAIN_SEED, 300)                 # deterministic
    tok = O.build_tokenizer(R.DESCRIPTION_WORDS)
    qa = [(t, a) for t, a in docs if a is not None]
    assert 150 < len(qa) < 250 and len(qa) < len(docs)             # 2 in 3 are questions
    for text, answer in docs:
        assert tok.unk_token_id not in tok(text)["input_ids"], text
        if answer is not None:
            context, question = text.split("\n")
            assert answer in context.split(), text                   # found in the description
            assert question.endswith("ASSISTANT: " + answer)
    # the main object is not always named first (distractors may come before it)
    assert any(t.split()[1] in scenes.COLORS and t.split()[2] in scenes.DISTRACTORS
               for t, a in docs if a is None)


def test_interrupted_stage_resumes_bit_for_bit_and_finished_stage_is_skipped(data, tmp_path, capsys):
    torch.set_num_threads(2)
    rec = R.Recipe(**TINY, stage_steps={"text": 6, "contrastive": 6})
    kw = dict(heldout_dir=data / "held", progress=False, until="contrastive")
    whole = S.train_staged(data / "train", tmp_path / "a", rec, **kw)
    with pytest.raises(C.Interrupted):
        S.train_staged(data / "train", tmp_path / "b", rec, stop_after={"contrastive": 3}, **kw)
    assert (tmp_path / "b/hear-organism-s.stages/text/done.json").exists()
    assert not (tmp_path / "b/hear-organism-s.stages/contrastive/done.json").exists()
    text_record = (tmp_path / "b/hear-organism-s.stages/text/done.json").read_text()
    capsys.readouterr()
    resumed = S.train_staged(data / "train", tmp_path / "b", rec, **kw)
    assert "stage text: finished before" in capsys.readouterr().out
    assert (tmp_path / "b/hear-organism-s.stages/text/done.json").read_text() == text_record
    from safetensors.torch import load_file
    a = load_file(str(tmp_path / "a/hear-organism-s.stages/contrastive/state.safetensors"))
    b = load_file(str(tmp_path / "b/hear-organism-s.stages/contrastive/state.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["stages"][1]["check"] == whole["stages"][1]["check"]
    # a checkpoint of other settings is neither resumed nor skipped as this run's: refused, named
    from hearlib.errors import UserError
    other = R.Recipe(**TINY, stage_steps={"text": 6, "contrastive": 9})
    with pytest.raises(UserError, match=r"stages/contrastive holds stage 'contrastive'.*'contrastive': 6"):
        S.train_staged(data / "train", tmp_path / "b", other, **kw)
    with pytest.raises(UserError, match="seed: 0 there, 1 now"):
        S.train_staged(data / "train", tmp_path / "b", rec, seed=1, **kw)
    later = R.Recipe(**TINY, stage_steps={"text": 6, "contrastive": 6}, instruct_lr=1e-3)   # stages not begun
    assert S.train_staged(data / "train", tmp_path / "b", later, **kw)["stages"] == resumed["stages"]
    # the text check against transformers' own loss on the held-out corpus (text-stage weights)
    t = S.StagedTrainer(data / "train", tmp_path / "c", rec, heldout_dir=data / "held", progress=False)
    C.Checkpoint(tmp_path / "a/hear-organism-s.stages/text").load({"lm": t.lm, "head": t.head})
    nll, n = 0.0, 0
    with torch.no_grad():
        for text, _ in R.corpus(scenes.HELDOUT_SEED, rec.heldout_images):
            ids = torch.tensor([t._ids(text)])
            loss = t.model(input_ids=ids, labels=ids).loss.item()      # mean NLL over len-1 tokens
            nll += loss * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    check = whole["stages"][0]["check"]
    assert check["tokens"] == n
    assert math.isclose(check["perplexity"], math.exp(nll / n), rel_tol=1e-4)
    c = whole["stages"][1]["check"]
    assert 0.0 <= c["retrieval_accuracy"] <= 1.0 and c["images"] == 3 * rec.heldout_images


def test_every_stage_runs_records_its_check_and_the_model_reloads(data, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    torch.set_num_threads(2)
    rec = R.Recipe(**TINY, stage_steps={s: 4 for s in R.STAGES})
    S.train_staged(data / "train", tmp_path, rec, heldout_dir=data / "held", progress=False)
    folder = tmp_path / "hear-organism-s"
    summary = json.loads((folder / "training_stages.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == list(rec.stages) == list(R.STAGES[:4])   # no stage 5
    checks = {s["stage"]: s["check"] for s in summary["stages"]}
    assert all(s["seconds"] > 0 and s["steps"] == 4 for s in summary["stages"])
    assert 1.0 < checks["text"]["perplexity"] < 10 * summary["stages"][0]["check"]["tokens"]
    assert np.isfinite(checks["align"]["caption_loss"]) and checks["align"]["caption_loss"] > 0
    acc = checks["instruct"]["answer_accuracy"]
    for q in ("object", "color", "position", "kind"):
        for style in scenes.STYLES:
            assert 0.0 <= acc[f"{q}/{style}"] <= 1.0
    model = AutoModelForImageTextToText.from_pretrained(folder)
    proc = AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert model.config.text_config.num_hidden_layers == 4
    _assert_object_accuracy_through_the_processor(model, proc, data / "held", rec.heldout_images, acc)


def _assert_object_accuracy_through_the_processor(model, proc, held, per_style: int, acc: dict) -> None:
    """The recorded held-out object accuracy, recounted from the PNG files through the processor."""
    from PIL import Image
    labels = json.loads((held / "labels.json").read_text())["images"]
    for style in scenes.STYLES:
        items = [(p, v) for p, v in labels.items() if v["style"] == style][:per_style]
        ok = 0
        for path, v in items:
            inputs = proc(text=O.prompt_text(PAPER_PROMPT), images=Image.open(held / path), return_tensors="pt")
            with torch.no_grad():
                word = proc.tokenizer.convert_ids_to_tokens(int(model(**inputs).logits[0, -1].argmax()))
            ok += word == v["object"]
        assert math.isclose(ok / len(items), acc[f"object/{style}"], abs_tol=1 / len(items) + 1e-9)


def test_stage_five_trains_every_weight_from_the_finished_four_stage_organism(data, tmp_path, capsys):
    """Stage 5 (tune_steps > 0): stages 1-4 are the finished four-stage organism's weights (its
    stage checkpoints may be gone, as on a fresh clone), then the tower, projector and decoder are
    all trained; the check is recorded and the model saved as <name>-tuned reloads with Auto*."""
    import shutil

    from transformers import AutoModelForImageTextToText, AutoProcessor
    torch.set_num_threads(2)
    steps = {s: 3 for s in R.STAGES}
    kw = dict(heldout_dir=data / "held", progress=False)
    S.train_staged(data / "train", tmp_path, R.Recipe(**TINY, stage_steps=steps), **kw)
    shutil.rmtree(tmp_path / "hear-organism-s.stages")
    capsys.readouterr()
    rec = R.Recipe(**TINY, stage_steps=steps, tune_steps=50)
    summary = S.train_staged(data / "train", tmp_path, rec, **kw)
    assert "stages 1-4: the finished" in capsys.readouterr().out
    assert summary["name"] == "hear-organism-s-tuned"
    assert [s["stage"] for s in summary["stages"]] == list(R.STAGES)
    first_four = json.loads((tmp_path / "hear-organism-s" / "training_stages.json").read_text())["stages"]
    for before, now in zip(first_four, summary["stages"][:4]):
        assert now == {**before, "reused_from": str(tmp_path / "hear-organism-s")}
    tune = summary["stages"][4]
    assert tune["steps"] == 3 and tune["seconds"] > 0 and tune["hyper"]["lr"] == rec.tune_lr
    four = AutoModelForImageTextToText.from_pretrained(tmp_path / "hear-organism-s").state_dict()
    folder = tmp_path / "hear-organism-s-tuned"
    model = AutoModelForImageTextToText.from_pretrained(folder)
    tuned = model.state_dict()
    assert four.keys() == tuned.keys()
    for part in ("vision_tower", "multi_modal_projector", "language_model"):
        names = [k for k in four if f".{part}." in f".{k}"]
        assert names and any(not torch.equal(four[k], tuned[k]) for k in names), part     # every part trained
    acc = tune["check"]["answer_accuracy"]
    assert json.loads((folder / "hearlib_training.json").read_text())["heldout_accuracy"] == acc
    _assert_object_accuracy_through_the_processor(model, AutoProcessor.from_pretrained(folder), data / "held",
                                                  rec.heldout_images, acc)


def test_r8_is_a_known_size_with_eight_layers():
    size = O.resolve_size("r8")
    assert size.name == "hear-organism-r8" and size.layers >= 8
    assert "hear-organism-r8" not in O.SIZES       # the fast recipe's committed three stay as they are


# --------------------------------------------------------------------------- a user's own images
def test_steps_from_data_size_and_augmentation():
    from hearlib.organism.data import augmenter
    from hearlib.organism.train import steps_for
    assert steps_for(10) == (300, 200)                       # lower bounds
    assert steps_for(3200, 64, 48) == (2000, 1000)           # 40 and 15 epochs
    assert steps_for(10 ** 6) == (6000, 1500)                # upper bounds
    x = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)
    torch.manual_seed(0)
    y = augmenter(40)(x)
    assert y.shape == (4, 3, 40, 40) and y.dtype == torch.uint8
    with pytest.raises(Exception, match="multiple of 8"):
        O.patch_for(36)


def test_train_command_on_a_users_folder_writes_the_heldout_report(data, tmp_path, capsys):
    """`hearlib train --data <domain>/<class>/<image>`: --image-size, validation split for early
    stopping, and the held-out report per domain and class printed and saved as JSON."""
    import shutil

    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hearlib.cli import main
    plain = tmp_path / "plain"
    shutil.copytree(data / "train" / "domains", plain)                  # the layout alone, no labels.json
    code = main(["train", "--data", str(plain), "--out", str(tmp_path / "models"), "--size", "s",
                 "--vision-steps", "10", "--decoder-steps", "10", "--image-size", "32", "--threads", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "validation split for early stopping" in out and "held-out report, hear-organism-s" in out
    folder = tmp_path / "models" / "hear-organism-s"
    report = json.loads((folder / "heldout_report.json").read_text())
    assert report["image_size"] == 32 and report["validation_images"] > 0
    # every held-out image counted once per grouping, and the groups agree with the total
    n = report["images"]
    for kind in ("domain", "class", "domain/class"):
        assert sum(v["images"] for v in report[kind].values()) == n
        mean = sum(v["accuracy"] * v["images"] for v in report[kind].values()) / n
        assert math.isclose(mean, report["accuracy"], abs_tol=1e-9)
    assert set(report["domain"]) == set(scenes.STYLES)
    # recount through the saved model and its processor from the PNG files
    model = AutoModelForImageTextToText.from_pretrained(folder)
    proc = AutoProcessor.from_pretrained(folder)
    assert model.config.vision_config.image_size == 32 and model.config.vision_config.patch_size == 4
    from hearlib.organism.data import prepare_data
    _, held, _, _ = prepare_data(plain, None, 0, 0.1, None, False)
    ok = 0
    for r in held:
        inputs = proc(text=O.prompt_text(PAPER_PROMPT), images=Image.open(r.path), return_tensors="pt")
        assert inputs["input_ids"].shape[1] == len(proc.tokenizer(O.prompt_text(PAPER_PROMPT))["input_ids"]) + 63
        with torch.no_grad():
            ok += proc.tokenizer.convert_ids_to_tokens(int(model(**inputs).logits[0, -1].argmax())) == r.label
    assert len(held) == n
    assert math.isclose(ok / n, report["accuracy"], abs_tol=1 / n + 1e-9)


def test_staged_recipe_refuses_a_folder_without_scene_labels(data, tmp_path):
    import shutil

    from hearlib.errors import UserError
    from hearlib.cli.train import _stage_steps
    shutil.copytree(data / "train" / "domains", tmp_path / "plain")
    with pytest.raises(UserError, match="hearlib scenes"):
        S.StagedTrainer(tmp_path / "plain", tmp_path / "out", R.Recipe(**TINY), progress=False)
    assert _stage_steps("20") == {s: 20 for s in R.STAGES}
    assert _stage_steps("text=3,align=5") == {"text": 3, "align": 5}
    with pytest.raises(UserError):
        _stage_steps("vision=3")


# --------------------------------------------------------------------------- the ingredient study
def test_a_stage_is_reused_only_where_nothing_it_depends_on_was_removed():
    full = R.Recipe(**TINY)
    assert full.same_stage(R.Recipe(**TINY, without=("align",)), "text")
    assert full.same_stage(R.Recipe(**TINY, without=("text",)), "contrastive")
    assert not full.same_stage(R.Recipe(**TINY, without=("text",)), "align")         # reads the decoder
    assert not full.same_stage(R.Recipe(**TINY, without=("contrastive",)), "align")  # reads the tower
    assert not full.same_stage(R.Recipe(**TINY, without=("align",)), "instruct")
    assert not full.same_stage(R.Recipe(**{**TINY, "text_lr": 5e-4}), "text")         # other settings
    tuned = R.Recipe(**TINY, tune_steps=5)
    assert full.same_stage(tuned, "instruct") and not full.same_stage(tuned, "tune")    # later settings do not count
    assert not tuned.same_stage(R.Recipe(**TINY, tune_steps=5, tune_lr=1e-3), "tune")
    assert tuned.name("hear-organism-r8") == "hear-organism-r8-tuned" and full.stages == R.STAGES[:4]
    assert R.Recipe(without=("text", "align")).name("hear-organism-r8") == "hear-organism-r8-no-text-no-align"
    from hearlib.errors import UserError
    from hearlib.cli.train import _without
    with pytest.raises(UserError, match="ingredients"):
        R.Recipe(without=("vision",))
    assert _without("text,align") == ("text", "align") and _without(None) == ()
    with pytest.raises(UserError, match="ingredients"):
        _without("tower")


def test_the_two_step_corpus_is_a_text_setting_with_its_own_name():
    two = R.Recipe(**TINY, text_corpus="two-step")
    assert two.name("hear-organism-r8") == "hear-organism-r8-twostep"
    assert not R.Recipe(**TINY).same_stage(two, "text") and not R.Recipe(**TINY).same_stage(two, "align")
    assert R.Recipe.from_json({k: v for k, v in vars(R.Recipe(**TINY)).items() if k != "text_corpus"}).text_corpus == "one-step"
    from hearlib.errors import UserError
    with pytest.raises(UserError, match="one-step, two-step"):
        R.Recipe(text_corpus="three-step")
    with pytest.raises(UserError, match="tune_steps"):
        R.Recipe(tune_steps=-1)


def test_each_ingredient_removed_reuses_the_full_runs_identical_stages(data, tmp_path, capsys):
    """The full recipe, then each ingredient removed: identical stages are copied from the full
    run (bit for bit), the removed stage is recorded as removed, dependent stages are recomputed,
    and the per-patch tower is the fast organism's own, read at its own feature layer."""
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText
    torch.set_num_threads(2)
    steps = {s: 3 for s in R.STAGES}
    kw = dict(heldout_dir=data / "held", progress=False)
    S.train_staged(data / "train", tmp_path, R.Recipe(**TINY, stage_steps=steps), **kw)
    full = tmp_path / "hear-organism-s.stages"

    def same(stage, name):
        a, b = load_file(str(full / stage / "state.safetensors")), load_file(str(tmp_path / name / stage / "state.safetensors"))
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    capsys.readouterr()
    summary = S.train_staged(data / "train", tmp_path, R.Recipe(**TINY, stage_steps=steps, without=("align",)), **kw)
    out = capsys.readouterr().out
    assert summary["name"] == "hear-organism-s-no-align"
    assert "stage text: reused" in out and "stage contrastive: reused" in out and "stage align: removed" in out
    stages = {s["stage"]: s for s in summary["stages"]}
    assert stages["align"]["removed"] and stages["align"]["steps"] == 0
    assert same("text", "hear-organism-s-no-align.stages") and same("contrastive", "hear-organism-s-no-align.stages")
    assert not same("instruct", "hear-organism-s-no-align.stages")     # trained from a random projector

    summary = S.train_staged(data / "train", tmp_path, R.Recipe(**TINY, stage_steps=steps, without=("text",)), **kw)
    out = capsys.readouterr().out
    assert "stage text: removed" in out and "stage contrastive: reused" in out and "stage align: reused" not in out
    assert not same("align", "hear-organism-s-no-text.stages")         # a random frozen decoder under it

    # a fresh clone holds the finished full organism, not its stage checkpoints: the contrastive
    # stage is then taken from the saved tower, and the ablation comes out bit for bit the same
    import shutil
    first = load_file(str(tmp_path / "hear-organism-s-no-text" / "model.safetensors"))
    shutil.rmtree(full / "contrastive")
    shutil.rmtree(tmp_path / "hear-organism-s-no-text.stages")
    summary = S.train_staged(data / "train", tmp_path, R.Recipe(**TINY, stage_steps=steps, without=("text",)), **kw)
    out = capsys.readouterr().out
    assert "stage contrastive: reused the tower of the finished" in out
    again = load_file(str(tmp_path / "hear-organism-s-no-text" / "model.safetensors"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert {s["stage"]: s for s in summary["stages"]}["contrastive"]["reused_from"] == str(tmp_path / "hear-organism-s")

    fast = O.resolve_size("s")
    organism = O.build_model(fast, O.build_tokenizer(R.DESCRIPTION_WORDS), seed=7)   # a fast-recipe folder
    organism.save_pretrained(tmp_path / "fast")
    recipe = R.Recipe(**TINY, stage_steps=steps, without=("contrastive",), tower_from=str(tmp_path / "fast"))
    summary = S.train_staged(data / "train", tmp_path, recipe, **kw)
    out = capsys.readouterr().out
    assert "stage text: reused" in out and "stage contrastive: removed" in out
    saved = AutoModelForImageTextToText.from_pretrained(tmp_path / "hear-organism-s-no-contrastive")
    assert saved.config.vision_feature_layer == -1 == summary["feature_layer"]
    tower = organism.model.vision_tower.state_dict()
    assert all(torch.equal(v, tower[k]) for k, v in saved.model.vision_tower.state_dict().items())
