"""hearlib.records.pipeline and ``hearlib run`` on a tiny random-weight LLaVA: what a record holds, how
samples are selected, resuming, keys, read-only use."""
from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]


@pytest.fixture(scope="module")
def coco(tiny_engine, tmp_path_factory):
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("pipeline-coco")
    groups = make_coco(root, tiny_engine, n_correct=4, n_wrong=1, seed=3)
    return root, groups


def _pipeline(model, data, store, **kw):
    from hearlib.records.pipeline import Pipeline

    return Pipeline(model, data, store=store, n_mean_images=3, batch_size=32, progress=False, **kw)


def test_attribution_record_is_the_paper_fit_on_per_sample_masks(tiny_llava, tiny_engine, coco, tmp_path, one_thread):
    from fixtures_collect import run

    from hearlib.method.attribution import fit_attribution
    from hearlib.method.masks import n_ablated, sample_head_masks, sample_rng
    from hearlib.method.means import MeanKV
    from hearlib.records.stages import Settings

    data, groups = coco
    counts = run(tiny_llava, data, tmp_path / "s", n_samples=4)
    assert (counts["finished"], counts["skipped"], counts["failed"]) == (4, 1, 0)   # the wrong one lies among them
    pipe = _pipeline(tiny_llava, data, tmp_path / "s", compute=False)
    items = {it.image_id: it for it in pipe.items()}
    record = pipe.get("attribution", items[groups["correct"][0]], Settings(n_masks=64))
    n = tiny_engine.n_total_heads
    masks, pi, logits = record["masks"], record["pi"], record["logits"]
    assert masks.dtype == bool and masks.shape == (64, n) and ((~masks).sum(1) == n_ablated(n, 0.75)).all()
    # masks come from the per-sample seed, whatever process or order computed them
    sample_id = record.meta["sample"]
    np.testing.assert_array_equal(masks, sample_head_masks(n, 64, 0.75, sample_rng(0, sample_id, "heads")))
    # π is the engine's normalized logit, θ the paper's fit on them
    intact, ablated = record.meta["logit_intact"], record.meta["logit_ablated"]
    np.testing.assert_allclose(pi, (logits - ablated) / (intact - ablated))
    fit = fit_attribution(masks, pi, seed=0)
    np.testing.assert_allclose(record["theta"], fit.coef)
    assert record.meta["r2"] == pytest.approx(fit.r2) and record.meta["pearson"] == pytest.approx(fit.pearson)
    (means_file,) = (tmp_path / "s" / "_means").rglob("*.safetensors")
    means = MeanKV.load(means_file, engine=tiny_engine)
    sample = tiny_engine.prepare(record.meta["path"], answer=record.meta["label"])
    np.testing.assert_allclose(tiny_engine.logits(sample, means, masks[:8], batch_size=32), logits[:8], atol=1e-5)
    assert record["image_attention"].shape == (tiny_engine.n_layers, tiny_engine.n_heads)
    np.testing.assert_array_equal(record["r2_counts"], [20, 50, 64])
    assert record["r2_curve"][-1] == pytest.approx(fit.r2)
    assert record.meta["settings"]["sampler"] == 1 and record.meta["settings"]["fit"] == 1


def test_selection_keeps_the_first_correct_samples_and_records_why_others_are_out(tiny_llava, coco, tmp_path,
                                                                                 one_thread):
    from fixtures_collect import run

    from hearlib.records.selection import Selection
    from hearlib.records.store import Store

    data, groups = coco
    pipe = _pipeline(tiny_llava, data, tmp_path / "s")
    chosen = pipe.select(Selection(3))
    order = [it.image_id for it in pipe.items()]
    expected = [i for i in order if i in groups["correct"]][:3]
    assert [it.image_id for it in chosen] == expected
    everything = pipe.select(Selection(None, correct_only=False))
    assert [it.image_id for it in everything] == order
    run(tiny_llava, data, tmp_path / "s", n_samples=4)
    manifest = Store(tmp_path / "s").manifest()
    skipped = [e for e in manifest.values() if e["status"] == "skipped"]
    assert [e["sample"] for e in skipped] == groups["wrong"]
    assert skipped[0]["reason"].startswith("the model answers") and skipped[0]["stage"] == "attribution"


def test_a_second_run_computes_nothing_and_other_settings_are_other_records(tiny_llava, coco, tmp_path, one_thread):
    from fixtures_collect import run

    from hearlib.records.store import Store

    data, _ = coco
    run(tiny_llava, data, tmp_path / "s", n_samples=2)
    store = Store(tmp_path / "s")
    keys = store.keys()
    before = {k: (store.path(k) / "meta.json").stat().st_mtime_ns for k in keys}
    counts = run(tiny_llava, data, tmp_path / "s", n_samples=2)
    assert (counts["finished"], counts["earlier"]) == (0, 4)     # two selections (main, t-SNE) of the same 2
    assert {k: (store.path(k) / "meta.json").stat().st_mtime_ns for k in store.keys()} == before
    counts = run(tiny_llava, data, tmp_path / "s", n_samples=2, seed=1)
    assert counts["finished"] == 2
    assert len([k for k in store.keys() if "/attribution-" in k]) == 4


def test_keys_hold_stage_sampler_and_fit_versions(tiny_llava, coco, tmp_path, monkeypatch):
    from hearlib.records import stages
    from hearlib.records.stages import Settings

    data, _ = coco
    pipe = _pipeline(tiny_llava, data, tmp_path / "s", compute=False)
    item = pipe.items()[0]
    keys = {stage: pipe.key(stage, Settings(), item) for stage in ("attribution", "validation", "image")}
    monkeypatch.setattr(stages, "SAMPLER_VERSION", 2)
    assert all(pipe.key(s, Settings(), item) != k for s, k in keys.items())
    monkeypatch.undo()
    monkeypatch.setattr(stages, "FIT_VERSION", 2)
    assert pipe.key("attribution", Settings(), item) != keys["attribution"]
    monkeypatch.undo()
    monkeypatch.setitem(stages.STAGES, "attribution", stages.STAGES["attribution"].__class__(
        **{**stages.STAGES["attribution"].__dict__, "version": 99}))
    # a dependency's version changes the keys of the stages that need it
    assert pipe.key("validation", Settings(), item) != keys["validation"]
    monkeypatch.undo()
    # a setting a stage does not read does not change its key
    assert pipe.key("attribution", Settings(threshold=0.5), item) == keys["attribution"]
    assert pipe.key("validation", Settings(threshold=0.5), item) != keys["validation"]


def test_read_only_pipeline_names_the_command_and_loads_no_model(tiny_llava, coco, tmp_path):
    from hearlib.records.pipeline import NotCollected
    from hearlib.records.selection import Selection
    from hearlib.records.stages import Settings

    data, _ = coco
    pipe = _pipeline(tiny_llava, data, tmp_path / "empty", compute=False, fill_command="python -m hearlib run X")
    with pytest.raises(NotCollected, match="fill it with: python -m hearlib run X"):
        pipe.select(Selection(2))
    with pytest.raises(NotCollected):
        pipe.ensure("attribution", pipe.items()[0], Settings())
    assert not pipe.engine_loaded


def test_adaptive_is_a_prefix_of_the_fixed_run(tiny_llava, coco, tmp_path, one_thread):
    from fixtures_collect import run

    from hearlib.records.stages import Settings

    data, groups = coco
    run(tiny_llava, data, tmp_path / "s", n_samples=1, n_masks=300)
    run(tiny_llava, data, tmp_path / "s", n_samples=1, n_masks=300,
        adaptive=dict(adaptive=True, adaptive_chunk=50, adaptive_tol=0.5, adaptive_patience=1))
    pipe = _pipeline(tiny_llava, data, tmp_path / "s", compute=False)
    item = next(it for it in pipe.items() if it.image_id == groups["correct"][0])
    f = pipe.get("attribution", item, Settings(n_masks=300))
    a = pipe.get("attribution", item, Settings(n_masks=300, adaptive=True, adaptive_chunk=50, adaptive_tol=0.5,
                                               adaptive_patience=1))
    m = a.meta["n_masks"]
    assert a.meta["adaptive_stop"] == m and 50 <= m < 300
    np.testing.assert_array_equal(a["r2_counts"], np.arange(50, m + 1, 50))
    np.testing.assert_array_equal(a["masks"], f["masks"][:m])
    np.testing.assert_allclose(a["logits"], f["logits"][:m], atol=1e-6)
    assert f.meta["n_masks"] == 300 and f.meta["adaptive_stop"] is None


def test_command_line(tiny_llava, coco, tmp_path, capsys, one_thread):
    from hearlib.cli import main
    from hearlib.records.store import Store

    data, _ = coco
    args = ["run", "--model", str(tiny_llava), "--data", str(data), "--out", str(tmp_path / "s"),
            "--stages", "attribution", "--n-samples", "2", "--n-masks", "32", "--n-mean-images", "3", "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "process 1/1: 2 computed, 2 done earlier, 1 skipped, 0 failed" in err   # t-SNE reuses the 2
    assert Store(tmp_path / "s").summary()["finished"] >= 2
    assert main(args + ["--n-masks", "5"]) == 2
    assert "--n-masks must be at least 10" in capsys.readouterr().err
    assert main(args[:-1] + ["--stages", "attributions"]) == 2
    assert "unknown stage group" in capsys.readouterr().err
    assert main(["run", "--model", str(tiny_llava), "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_domainnet_samples_are_interleaved_over_domains_and_classes(tiny_llava, tmp_path, one_thread):
    from PIL import Image

    from hearlib.records.selection import Selection

    rng = np.random.default_rng(5)
    for domain in ("real", "sketch"):
        for cls in ("cat", "dog"):
            folder = tmp_path / "dn" / domain / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    pipe = _pipeline(tiny_llava, tmp_path / "dn", tmp_path / "s")
    assert pipe.kind == "domainnet" and pipe.dataset_id == "domainnet-dn"
    chosen = pipe.select(Selection(4, correct_only=False))
    assert [it.image_id for it in chosen] == ["real/cat/0", "sketch/cat/0", "real/dog/0", "sketch/dog/0"]


def test_no_correct_sample_stops_with_what_to_do(tiny_llava, tiny_engine, tmp_path, one_thread):
    from fixtures_collect import make_coco

    from hearlib.errors import UserError
    from hearlib.records.selection import Selection

    make_coco(tmp_path / "wrong", tiny_engine, n_correct=0, n_wrong=2, n_reference=0, seed=4)
    pipe = _pipeline(tiny_llava, tmp_path / "wrong", tmp_path / "s")
    with pytest.raises(UserError, match="CORRECT_ONLY=0"):
        pipe.select(Selection(2))
    assert len(pipe.select(Selection(2, correct_only=False))) == 2


def test_an_answer_the_tokenizer_cannot_represent_is_skipped_like_a_wrong_one(tiny_llava, tiny_engine, tmp_path,
                                                                             one_thread):
    import json

    from fixtures_collect import make_coco, run

    from hearlib.records.store import Store

    root = tmp_path / "coco"
    groups = make_coco(root, tiny_engine, n_correct=2, seed=6)
    coco = json.loads((root / "annotations" / "instances.json").read_text())
    first = int(groups["correct"][0])
    cat = next(a["category_id"] for a in coco["annotations"] if a["image_id"] == first)
    coco["categories"].append({"id": 99, "name": "qqqqzzzz", "supercategory": "thing"})
    for ann in coco["annotations"]:
        if ann["image_id"] == first:
            ann["category_id"] = 99
    (root / "annotations" / "instances.json").write_text(json.dumps(coco))
    assert cat != 99
    counts = run(tiny_llava, root, tmp_path / "s", n_samples=2)
    assert counts["failed"] == 0 and counts["finished"] == 2
    entries = [e for e in Store(tmp_path / "s").manifest().values() if e["sample"] == str(first)
               and "/attribution-" in e["key"]]
    assert [e["status"] for e in entries] == ["skipped"]
    assert "cannot represent the answer 'qqqqzzzz'" in entries[0]["reason"]
