"""hearlib.collect (``python -m hearlib run``) on a tiny random-weight LLaVA, in-process."""
from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]


@pytest.fixture(scope="module")
def coco(tiny_engine, tmp_path_factory):
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("collect-coco")
    groups = make_coco(root, tiny_engine, n_correct=4, n_wrong=1, seed=3)
    return root, groups


def _cfg(model, data, out, **kw):
    from hearlib.collect import CollectConfig

    base = dict(n_samples=5, n_masks=64, n_mean_images=3, batch_size=32, progress=False)
    base.update(kw)
    return CollectConfig(model=str(model), data=data, out=out, **base)


def test_records_resume_and_content(tiny_llava, tiny_engine, coco, tmp_path, one_thread):
    from hearlib.attribution import fit_attribution
    from hearlib.collect import collect
    from hearlib.masks import n_ablated, sample_head_masks, sample_rng
    from hearlib.means import MeanKV
    from hearlib.store import Store

    data, groups = coco
    out = tmp_path / "store"
    counts = collect(_cfg(tiny_llava, data, out))
    assert (counts["finished"], counts["skipped"], counts["failed"], counts["earlier"]) == (4, 1, 0, 0)
    store = Store(out)
    manifest = store.manifest(counts["prefix"])
    assert sorted(e["sample"] for e in manifest.values() if e["status"] == "finished") == sorted(groups["correct"])
    wrong = [e for e in manifest.values() if e["status"] == "skipped"]
    assert [e["sample"] for e in wrong] == groups["wrong"] and "model answers" in wrong[0]["reason"]

    keys = store.keys(counts["prefix"])
    assert len(keys) == 4
    record = store.get(keys[0])
    n = tiny_engine.n_total_heads
    masks, pi, logits = record.arrays["masks"], record.arrays["pi"], record.arrays["logits"]
    assert masks.dtype == bool and masks.shape == (64, n)
    assert ((~masks).sum(1) == n_ablated(n, 0.75)).all()
    # masks come from the per-sample seed, whatever process or order computed them
    sample_id = record.meta["sample"]
    np.testing.assert_array_equal(masks, sample_head_masks(n, 64, 0.75, sample_rng(0, sample_id, "heads")))
    # π and θ are the engine's normalized logits and the paper's fit on them
    intact, ablated = float(record.arrays["logit_intact"]), float(record.arrays["logit_ablated"])
    np.testing.assert_allclose(pi, (logits - ablated) / (intact - ablated))
    fit = fit_attribution(masks, pi, seed=0)
    np.testing.assert_allclose(record.arrays["coef"], fit.coef)
    assert record.meta["r2"] == pytest.approx(fit.r2) and float(record.arrays["pearson"]) == pytest.approx(fit.pearson)
    means = MeanKV.load(record.meta["means_path"], engine=tiny_engine)
    sample = tiny_engine.prepare(record.meta["path"], answer=record.meta["label"])
    np.testing.assert_allclose(tiny_engine.logits(sample, means, masks[:8], batch_size=32), logits[:8], atol=1e-5)
    assert record.arrays["image_attention"].shape == (tiny_engine.n_layers, tiny_engine.n_heads)
    # R² as a function of M from the masks already drawn
    np.testing.assert_array_equal(record.arrays["r2_counts"], [20, 50, 64])
    assert record.arrays["r2_curve"][-1] == pytest.approx(fit.r2)
    assert record.meta["correct"] and record.meta["answer_token"] == record.meta["label"]
    assert record.meta["means_overlap"] == 0 and record.meta["n_mean_images"] == 3

    # a second run computes nothing
    before = {k: (store.path(k) / "meta.json").stat().st_mtime_ns for k in keys}
    counts = collect(_cfg(tiny_llava, data, out))
    assert (counts["finished"], counts["earlier"]) == (0, 5)
    assert {k: (store.path(k) / "meta.json").stat().st_mtime_ns for k in keys} == before
    # other settings are other records
    counts = collect(_cfg(tiny_llava, data, out, seed=1, n_samples=2))
    assert counts["finished"] + counts["skipped"] == 2 and counts["prefix"] != keys[0].rsplit("/", 1)[0] + "/"


def test_adaptive_is_a_prefix_of_the_fixed_run(tiny_llava, coco, tmp_path, one_thread):
    from hearlib.collect import collect
    from hearlib.store import Store

    data, groups = coco
    fixed = collect(_cfg(tiny_llava, data, tmp_path / "s", n_samples=1, n_masks=300))
    adaptive = collect(_cfg(tiny_llava, data, tmp_path / "s", n_samples=1, n_masks=300, adaptive=True,
                            adaptive_chunk=50, adaptive_tol=0.5, adaptive_patience=1))
    store = Store(tmp_path / "s")
    a = store.get(store.keys(adaptive["prefix"])[0])
    f = store.get(store.keys(fixed["prefix"])[0])
    m = a.meta["n_masks"]
    assert a.meta["adaptive"] and a.meta["adaptive_stop"] == m and 50 <= m < 300
    np.testing.assert_array_equal(a.arrays["r2_counts"], np.arange(50, m + 1, 50))
    np.testing.assert_array_equal(a.arrays["masks"], f.arrays["masks"][:m])
    np.testing.assert_allclose(a.arrays["logits"], f.arrays["logits"][:m], atol=1e-6)
    assert f.meta["n_masks"] == 300 and not f.meta["adaptive"]


def test_command_line(tiny_llava, coco, tmp_path, capsys, one_thread):
    from hearlib.cli import main
    from hearlib.store import Store

    data, _ = coco
    args = ["run", "--model", str(tiny_llava), "--data", str(data), "--out", str(tmp_path / "s"),
            "--n-samples", "2", "--n-masks", "32", "--n-mean-images", "3", "--no-progress"]
    assert main(args) == 0
    assert "1 finished, 1 skipped, 0 failed" in capsys.readouterr().err
    assert Store(tmp_path / "s").summary() == {"finished": 1, "skipped": 1, "failed": 0}
    assert main(args + ["--n-masks", "5"]) == 2
    assert "--n-masks must be at least 10" in capsys.readouterr().err
    assert main(["run", "--model", str(tiny_llava), "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_domainnet_layout(tiny_llava, tiny_engine, tmp_path, one_thread):
    """A DomainNet-layout folder: classes interleaved, labels from the class folders."""
    from PIL import Image

    from hearlib.collect import collect

    rng = np.random.default_rng(5)
    for domain in ("real", "sketch"):
        for cls in ("cat", "dog"):
            folder = tmp_path / "dn" / domain / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray((rng.random((48, 48, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    counts = collect(_cfg(tiny_llava, tmp_path / "dn", tmp_path / "s", n_samples=4, n_masks=20,
                          include_wrong=True))
    assert counts["finished"] == 4 and counts["dataset"] == "domainnet-dn"
    from hearlib.store import Store

    labels = sorted(e["sample"] for e in Store(tmp_path / "s").manifest().values())
    assert labels == ["real/cat/0", "real/dog/0", "sketch/cat/0", "sketch/dog/0"]
