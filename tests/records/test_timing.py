"""Where a run's time goes (issue 17): hearlib run's per-stage accounting, its run summary and
manifest entries; the batched means are the per-image means."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]


@pytest.fixture(scope="module")
def coco(tiny_engine, tmp_path_factory):
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("timing-coco")
    make_coco(root, tiny_engine, n_correct=2, n_wrong=0, seed=5, n_reference=5)
    return root


def test_batched_means_equal_one_image_at_a_time(tiny_engine, random_images, one_thread):
    from hearlib.method.means import compute_means

    images = random_images(5, seed=11)
    one = compute_means(tiny_engine, images, progress=False, batch_size=1)
    # independent: the mean of each image's own keys/values from its own unablated forward
    keys, values = zip(*(tiny_engine.image_keys_values(tiny_engine.prepare(im)) for im in images))
    np.testing.assert_allclose(one.k.double(), torch_mean(keys), rtol=0, atol=1e-6)
    np.testing.assert_allclose(one.v.double(), torch_mean(values), rtol=0, atol=1e-6)
    for batch in (2, 5, 16):       # uneven last batch, one batch, more than the images
        many = compute_means(tiny_engine, images, progress=False, batch_size=batch)
        np.testing.assert_allclose(many.k, one.k, rtol=0, atol=1e-6)
        np.testing.assert_allclose(many.v, one.v, rtol=0, atol=1e-6)
        assert many.meta == one.meta
    with pytest.raises(Exception, match="at least 1"):
        compute_means(tiny_engine, images, progress=False, batch_size=0)


def test_means_halve_their_batch_when_memory_runs_out(tiny_engine, random_images, monkeypatch, one_thread):
    import torch

    from hearlib.method.means import compute_means

    images = random_images(5, seed=12)
    one = compute_means(tiny_engine, images, progress=False, batch_size=1)
    real, sizes = tiny_engine.image_keys_values_many, []

    def small_memory(chunk, prompt=None):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("too many images")
        return real(chunk, prompt)

    monkeypatch.setattr(tiny_engine, "image_keys_values_many", small_memory)
    halved = compute_means(tiny_engine, images, progress=False, batch_size=8)
    assert sizes == [5, 4, 2, 2]           # 8 → 4 → 2, then the last image alone (no batch call)
    np.testing.assert_allclose(halved.k, one.k, rtol=0, atol=1e-6)
    np.testing.assert_allclose(halved.v, one.v, rtol=0, atol=1e-6)


def torch_mean(tensors):
    import torch

    return torch.stack([t.double() for t in tensors]).mean(0)


def test_run_accounts_computing_seconds_per_stage_and_writes_a_summary(tiny_llava, coco, tmp_path, one_thread, capsys):
    from fixtures_collect import run

    from hearlib.records.store import Store

    store = tmp_path / "store"
    summary = run(tiny_llava, coco, store, stages=("attribution", "validation", "lens"), n_samples=2, n_masks=32)
    table = capsys.readouterr().err
    (model,) = summary["seconds"]
    seconds, records = summary["seconds"][model], summary["records"][model]
    assert records == {"means": 1, "screen": 2, "attribution": 2 * 2, "validation": 2 * 2, "lens": 2}
    assert set(seconds) == {"load model", "means", *records}
    assert all(value > 0 for value in seconds.values())
    assert sum(seconds.values()) <= summary["wall_s"]
    # the records' own times: a stage's inclusive seconds are its own plus those computed inside it
    metas = [Store(store).get(key).meta for key in Store(store).keys()]
    own = {}
    for meta in metas:
        own[meta["stage"]] = own.get(meta["stage"], 0.0) + meta["run"]["own_seconds"]
        assert meta["run"]["own_seconds"] <= meta["run"]["seconds"]
    for stage, value in own.items():
        assert seconds[stage] == pytest.approx(value, rel=1e-9)
    screen_inside = [m for m in metas if m["stage"] == "screen"]
    for meta in screen_inside:      # screening needs nothing: its own time is all its time
        assert meta["run"]["own_seconds"] == meta["run"]["seconds"]
    # the manifest holds each finished record's seconds
    manifest = Store(store).manifest()
    finished = [e for e in manifest.values() if e["status"] == "finished"]
    assert finished and all(e["seconds"] >= 0 for e in finished)
    # the run summary: the same numbers and the environment, written into the store
    (path,) = (store / "_runs").glob("*.json")
    written = json.loads(path.read_text())
    assert written["seconds"] == summary["seconds"] and written["records"] == summary["records"]
    assert {"torch", "transformers", "numpy", "torch_threads", "blas"} <= set(written["environment"])
    # the printed table: one row per stage, one column per model, the total
    assert "seconds spent computing" in table
    for stage in ("load model", "means", "screen", "attribution", "validation", "lens", "total"):
        assert any(line.strip().startswith(stage) for line in table.splitlines()), stage
    assert f"{sum(seconds.values()):.1f}" in table

    # a second run reads everything: nothing computed, an empty account
    again = run(tiny_llava, coco, store, stages=("attribution", "validation", "lens"), n_samples=2, n_masks=32)
    assert again["finished"] == 0 and again["seconds"] == {}
    assert "nothing computed" in capsys.readouterr().err
    assert len(list((store / "_runs").glob("*.json"))) == 2


def test_time_table_lines_up_models_and_totals():
    from hearlib.paper.collect import time_table

    text = time_table({"s": {"screen": 1.0, "attribution": 3.0}, "m": {"attribution": 5.5}},
                      {"s": {"screen": 2, "attribution": 2}, "m": {"attribution": 1}}, wall=12.0)
    lines = text.splitlines()
    header = lines[1].split()
    assert header == ["stage", "s", "m", "total"]
    screen = next(line for line in lines if line.strip().startswith("screen")).split()
    assert screen[:2] == ["screen", "1.0"] and "-" in screen
    attribution = next(line for line in lines if line.strip().startswith("attribution"))
    assert "8.5 (3)" in attribution
    total = next(line for line in lines if line.strip().startswith("total")).split()
    assert total == ["total", "4.0", "5.5", "9.5"]
    assert "wall clock 12.0 s" in text
