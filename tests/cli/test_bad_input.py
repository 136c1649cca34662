"""Bad input never stops a run: each case gives a clear message and the other samples finish."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]


@pytest.fixture(scope="module")
def messy(tiny_engine, tmp_path_factory):
    """3 good samples, 1 wrong answer, 1 two-word answer, 1 truncated image, 2 without annotations."""
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("messy-coco")
    groups = make_coco(root, tiny_engine, n_correct=3, n_wrong=1, multi_token=1, broken=1, no_annotation=2,
                       seed=11)
    return root, groups


@pytest.fixture(scope="module")
def messy_run(tiny_llava, messy, tmp_path_factory):
    import torch

    from fixtures_collect import run

    from hearlib.records.store import Store

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, groups = messy
        out = tmp_path_factory.mktemp("messy-store")
        counts = run(tiny_llava, data, out, n_samples=4, n_masks=32)
    finally:
        torch.set_num_threads(threads)
    store = Store(out)
    by_sample = {e["sample"]: e for e in store.manifest().values() if e.get("stage") == "attribution"
                 and "/attribution-" in e["key"]}
    return counts, store, by_sample, groups


def test_run_is_intact(messy_run):
    counts, store, by_sample, groups = messy_run
    # 3 correct + 1 two-word answer finish; the wrong one is skipped; the truncated image fails
    assert (counts["finished"], counts["skipped"], counts["failed"]) == (4, 1, 1)
    finished = sorted(s for s, e in by_sample.items() if e["status"] == "finished")
    assert finished == sorted(groups["correct"] + groups["multi"])
    assert len([k for k in store.keys() if "/attribution-" in k]) == 4


def test_truncated_image_fails_with_reason(messy_run):
    _, store, by_sample, groups = messy_run
    (broken,) = groups["broken"]
    entry = by_sample[broken]
    assert entry["status"] == "failed"
    assert entry["reason"].startswith("cannot read image") and entry["path"].endswith(".png")
    assert store.get(entry["key"]) is None


def test_wrong_answer_is_skipped_and_recorded(messy_run):
    _, store, by_sample, groups = messy_run
    (wrong,) = groups["wrong"]
    entry = by_sample[wrong]
    assert entry["status"] == "skipped" and entry["label"] in ("zebra", "giraffe", "elephant")
    assert entry["reason"].startswith("the model answers ") and entry["reason"].endswith(f"not {entry['label']!r}")
    assert store.get(entry["key"]) is None


def test_multi_token_answer_uses_first_token(messy_run, tiny_engine):
    _, store, by_sample, groups = messy_run
    (multi,) = groups["multi"]
    record = store.get(by_sample[multi]["key"])
    word = record.meta["label"].split()[0]
    assert record.meta["answer_tokens"] == [word, "red"] and "the first is scored" in record.meta["answer_note"]
    assert record.meta["answer_id"] == tiny_engine.tokenizer.convert_tokens_to_ids(word)


def test_failed_sample_is_retried_and_skips_are_not(tiny_llava, messy, tmp_path, one_thread):
    """A restart retries the failed image (here repaired) and leaves skipped ones alone."""
    import shutil

    from fixtures_collect import run

    from hearlib.records.store import Store

    data, groups = messy
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    counts = run(tiny_llava, copy, tmp_path / "s", n_samples=4, n_masks=32)
    assert counts["failed"] == 1
    (broken,) = groups["broken"]
    good = next(p for p in sorted((copy / "images").iterdir()) if p.stem.lstrip("0") != broken)
    shutil.copy(good, copy / "images" / f"{int(broken):06d}.png")
    counts = run(tiny_llava, copy, tmp_path / "s", n_samples=4, n_masks=32)
    assert counts["failed"] == 0
    statuses = {e["sample"]: e["status"] for e in Store(tmp_path / "s").manifest().values()
                if "/attribution-" in e["key"]}
    assert statuses[broken] in ("finished", "skipped")     # the repaired image, answered right or wrong
    assert statuses[groups["wrong"][0]] == "skipped"


def test_means_from_another_model(tiny_llava, messy, tmp_path, capsys, tiny_engine):
    from hearlib.cli import main
    from hearlib.errors import MeansMismatch
    from hearlib.method.means import MeanKV, compute_means
    from hearlib.method.loading import load_engine
    from hearlib.families.tiny import build_tiny

    data, _ = messy
    other = load_engine(build_tiny("llava", tmp_path / "other", seed=1))
    image = sorted((data / "images").iterdir())[0]
    other_means = compute_means(other, [image], progress=False).save(tmp_path / "other.safetensors")
    args = ["run", "--model", str(tiny_llava), "--data", str(data), "--out", str(tmp_path / "s"),
            "--n-samples", "2", "--n-masks", "16", "--no-progress", "--means", str(other_means)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "hearlib run: error:" in err and "cannot be used here" in err and "other weights" in err
    assert not list((tmp_path / "s").glob("*/*/attribution-*"))
    # a means file for another prompt prefix (tokens before the image) is refused the same way
    means = compute_means(tiny_engine, [image], progress=False)
    means.meta["prefix_hash"] = "0" * 16
    path = means.save(tmp_path / "prefix.safetensors")
    with pytest.raises(MeansMismatch, match="prompt prefix"):
        from fixtures_collect import run

        run(tiny_llava, data, tmp_path / "s2", n_samples=2, n_masks=16, means_file=path)
    # the right file works
    good = compute_means(tiny_engine, [image], progress=False).save(tmp_path / "good.safetensors")
    assert main(args[:-1] + [str(good)]) == 0


def test_unknown_architecture(messy, tmp_path, capsys):
    from hearlib.cli import main

    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    data, _ = messy
    assert main(["run", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hearlib run: error:" in err and "'bert' model" in err and "LLaVA-1.5" in err
    assert "Traceback" not in err


def test_out_of_memory_halves_the_mask_batch(tiny_llava, messy, tmp_path, monkeypatch, one_thread):
    import torch

    from fixtures_collect import run

    from hearlib.method.engine import Engine
    from hearlib.records.store import Store

    data, _ = messy
    run(tiny_llava, data, tmp_path / "ref", n_samples=1)
    real = Engine._fast
    calls = []

    def flaky(self, sample, means, heads, *args, **kwargs):
        calls.append(len(heads))
        if len(heads) > 16 and len([c for c in calls if c > 16]) == 1:   # the first large batch
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(self, sample, means, heads, *args, **kwargs)

    monkeypatch.setattr(Engine, "_fast", flaky)
    with pytest.warns(RuntimeWarning, match="mask batch halved to 16"):
        counts = run(tiny_llava, data, tmp_path / "oom", n_samples=1)
    assert counts["finished"] == 1 and counts["failed"] == 0
    assert 32 in calls and calls.count(16) >= 2
    records = [Store(root).get(k) for root in (tmp_path / "oom", tmp_path / "ref")
               for k in Store(root).keys() if "/attribution-" in k]
    record, ref_record = records
    np.testing.assert_array_equal(record["masks"], ref_record["masks"])
    np.testing.assert_allclose(record["logits"], ref_record["logits"], atol=1e-5)
