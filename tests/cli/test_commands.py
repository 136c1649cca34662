"""``python -m hearlib means`` and ``attribute``: the files they write, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hearlib.cli import main

pytest_plugins = ["fixtures_collect"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, random_images):
    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(random_images(4, seed=7)):
        image.save(folder / f"{i:03d}.png")
    return folder


def test_means_then_attribute_writes_the_documented_files(tmp_path, image_folder, tiny_model_dir):
    model = str(tiny_model_dir("llava"))
    means = tmp_path / "means.safetensors"
    assert main(["means", "--model", model, "--images", str(image_folder), "--out", str(means),
                 "--n-images", "3"]) == 0
    out = tmp_path / "attr"
    assert main(["attribute", "--model", model, "--image", str(image_folder / "003.png"), "--answer", "dog",
                 "--means", str(means), "--n-masks", "60", "--seed", "1", "--out", str(out)]) == 0
    masks = np.load(out / "masks.npy", allow_pickle=False)
    logits = np.load(out / "logits.npy", allow_pickle=False)
    coef = np.load(out / "coef.npy", allow_pickle=False)
    summary = json.loads((out / "summary.json").read_text())
    n = summary["n_layers"] * summary["n_heads"]
    assert masks.dtype == bool and masks.shape == (60, n)
    assert (masks.sum(1) == n - round(0.75 * n)).all()
    assert logits.dtype == np.float64 and logits.shape == (60,)
    assert coef.dtype == np.float64 and coef.shape == (n,)
    for key in ("n_layers", "n_heads", "logit_intact", "logit_ablated", "r2", "pearson"):
        assert key in summary
    # The stored logits are the engine's own, recomputed independently by the literal path.
    from hearlib.method.means import MeanKV
    from hearlib.method.loading import load_engine
    engine = load_engine(model)
    sample = engine.prepare(image_folder / "003.png", answer="dog")
    literal = engine.logits(sample, MeanKV.load(means, engine=engine), masks[:3], method="literal")
    assert np.abs(literal - logits[:3]).max() <= 1e-4
    assert abs(summary["logit_intact"] - engine.record(sample).logit) <= 1e-5


@pytest.mark.parametrize("case, args, message", [
    ("missing model", ["--model", "/no/such/model"], "model not found"),
    ("bad answer", ["--answer", "qqqqzzzz"], "cannot represent the answer"),
    ("unreadable image", ["--image", "BROKEN"], "cannot read image"),
    ("empty prompt", ["--prompt", " "], "non-empty"),
])
def test_bad_input_ends_with_one_line_and_nonzero_exit(case, args, message, tmp_path, image_folder,
                                                       tiny_model_dir):
    model = str(tiny_model_dir("llava"))
    means = tmp_path / "means.safetensors"
    assert main(["means", "--model", model, "--images", str(image_folder), "--out", str(means),
                 "--n-images", "2"]) == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    base = {"--model": model, "--image": str(image_folder / "000.png"), "--answer": "dog",
            "--means": str(means), "--n-masks": "20", "--out": str(tmp_path / "o")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = str(broken) if value == "BROKEN" else value
    argv = [sys.executable, "-m", "hearlib", "attribute"] + [x for pair in base.items() for x in pair]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("hearlib")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_attribute_notes_when_the_model_answers_otherwise(tmp_path, image_folder, tiny_model_dir, capsys):
    """A one-line note on stderr when the unablated answer is not --answer; none when it is."""
    from hearlib.method.loading import load_engine

    model = str(tiny_model_dir("llava"))
    image = image_folder / "001.png"
    engine = load_engine(model)
    sample = engine.prepare(image, answer="dog")
    said = engine.tokenizer.decode([engine.record(sample).predicted_id]).strip()
    other = "cat" if said != "cat" else "dog"
    means = tmp_path / "means.safetensors"
    assert main(["means", "--model", model, "--images", str(image_folder), "--out", str(means),
                 "--n-images", "2"]) == 0
    base = ["attribute", "--model", model, "--image", str(image), "--means", str(means), "--n-masks", "20"]
    capsys.readouterr()
    assert main(base + ["--answer", other, "--out", str(tmp_path / "a")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: the model answers {said!r}, not {other!r}; attributing the logit of {other!r} anyway"]
    assert main(base + ["--answer", said, "--out", str(tmp_path / "b")]) == 0
    assert "note:" not in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["correct"] is True


def test_attribute_draws_the_masks_of_hearlib_run(tmp_path, tiny_model_dir):
    """For the same seed and sample, `attribute` and `hearlib run` draw the same head masks."""
    from fixtures_collect import make_coco, run

    from hearlib.method.loading import load_engine
    from hearlib.records.store import Store

    model = tiny_model_dir("llava")
    engine = load_engine(model)
    data = tmp_path / "coco"
    groups = make_coco(data, engine, n_correct=1, seed=2)
    run(model, data, tmp_path / "store", n_samples=1, n_masks=40, seed=3)
    store = Store(tmp_path / "store")
    (key,) = [k for k in store.keys() if "/attribution-" in k]
    record = store.get(key)
    sample_id = record.meta["sample"]
    assert sample_id == groups["correct"][0]
    (means,) = (tmp_path / "store" / "_means").rglob("*.safetensors")
    image = data / "images" / f"{int(sample_id):06d}.png"
    assert main(["attribute", "--model", str(model), "--image", str(image), "--answer", record.meta["label"],
                 "--means", str(means), "--n-masks", "40", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "masks.npy"), record["masks"])   # id from the file name
    np.testing.assert_allclose(np.load(tmp_path / "a" / "coef.npy"), record["theta"], atol=1e-6)
    assert main(["attribute", "--model", str(model), "--image", str(image), "--answer", record.meta["label"],
                 "--means", str(means), "--n-masks", "40", "--seed", "3", "--sample-id", "other",
                 "--out", str(tmp_path / "b")]) == 0
    assert not np.array_equal(np.load(tmp_path / "b" / "masks.npy"), record["masks"])
