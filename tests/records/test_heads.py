"""``python -m hearlib heads``: a tiny LLaVA's attribution and validation records, written to a store by
``hearlib run``, become the heads JSON and CSV of docs/HEADS_FORMAT.md; the test recomputes every
number from the records with numpy and checks the files against it, and checks the errors for a
missing store, a model without records and an ambiguous model."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]

ROOT = Path(__file__).resolve().parents[2]
N_SAMPLES = 3


@pytest.fixture(scope="module")
def store(tiny_llava, tiny_engine, tmp_path_factory):
    """A store with the attribution and validation groups of ``hearlib run`` (the main study, with
    every criterion, and the ratio sweep's HeAr-only validation at p = 0.5 on its own θ)."""
    import torch

    from fixtures_collect import make_coco, run

    root = tmp_path_factory.mktemp("heads")
    make_coco(root / "coco", tiny_engine, n_correct=4, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(tiny_llava, root / "coco", root / "store", stages=("attribution", "validation"), n_samples=N_SAMPLES,
            n_masks=40)
    finally:
        torch.set_num_threads(threads)
    return root / "store"


def _heads(*args) -> subprocess.CompletedProcess:
    from fixtures_collect import subprocess_env

    return subprocess.run([sys.executable, "-m", "hearlib", "heads", *map(str, args)], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def _main_records(store_root: Path):
    """The main study's records, found from the stored metadata alone: the attribution records at
    the default ratio 0.75 and the validation records with every criterion on top of them."""
    from hearlib.method.effects import CRITERIA
    from hearlib.records.store import Store

    s = Store(store_root, clean=False)
    records = [s.get(k) for k in s.keys()]
    attr = [r for r in records if r.meta["stage"] == "attribution" and r.meta["settings"]["ratio"] == 0.75]
    val = [r for r in records if r.meta["stage"] == "validation" and r.meta["settings"]["ratio"] == 0.75
           and r.meta["settings"]["criteria"] == list(CRITERIA)]
    assert len({r.key.rsplit("/", 1)[0] for r in attr}) == 1 and len({r.key.rsplit("/", 1)[0] for r in val}) == 1
    return sorted(attr, key=lambda r: r.meta["sample"]), sorted(val, key=lambda r: r.meta["sample"])


def test_heads_json_and_csv_match_the_records(store, tiny_llava, tmp_path):
    out = tmp_path / "heads.json"
    done = _heads("--store", store, "--model", tiny_llava, "--out", out, "--top-k", 2)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    with open(tmp_path / "heads.csv", newline="") as stream:
        table = list(csv.DictReader(stream))

    attr, val = _main_records(store)
    thetas = np.stack([r["theta"] for r in attr])                    # [S, N]
    x_star = np.stack([r["x_star"] for r in val]).astype(bool)
    n_layers, n_heads = attr[0]["n_layers"], attr[0]["n_heads"]
    assert (doc["format"], doc["version"], doc["n_layers"], doc["n_heads"]) == ("hearlib-heads", 1, n_layers, n_heads)
    assert doc["n_samples"] == {"attribution": len(attr), "validation": len(val)}
    assert len(val) == N_SAMPLES and len(attr) >= N_SAMPLES       # the t-SNE selection adds attribution samples
    assert doc["samples"]["attribution"] == [r.meta["sample"] for r in attr]
    assert doc["samples"]["validation"] == [r.meta["sample"] for r in val]
    assert doc["settings"]["attribution"] == attr[0].meta["settings"]
    assert doc["settings"]["validation"] == val[0].meta["settings"]
    assert doc["model_id"] == attr[0].meta["model_id"]

    # per head: mean, population std, x* count and share, Fig. 10's split (θ > 0.1 in ≥ 50% of samples)
    above = (thetas > 0.1).mean(axis=0)
    in_split = (thetas > 0.1).any(axis=0)
    assert len(doc["heads"]) == len(table) == n_layers * n_heads
    for n, (row, line) in enumerate(zip(doc["heads"], table)):
        layer, head = n // n_heads, n % n_heads
        assert (row["layer"], row["head"], row["index"]) == (layer, head, n)
        assert (int(line["layer"]), int(line["head"]), int(line["index"])) == (layer, head, n)
        expected = {"theta_mean": thetas[:, n].sum() / len(attr),
                    "theta_std": np.sqrt(((thetas[:, n] - thetas[:, n].sum() / len(attr)) ** 2).sum() / len(attr)),
                    "theta_min": thetas[:, n].min(), "theta_max": thetas[:, n].max(),
                    "x_star_share": x_star[:, n].sum() / len(val), "above_threshold_share": above[n]}
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-15), (n, name)
            assert float(line[name]) == row[name], (n, name)          # the CSV holds the JSON's numbers exactly
        assert row["x_star_count"] == int(line["x_star_count"]) == int(x_star[:, n].sum())
        kind = ("none" if not in_split[n] else "sample-agnostic" if above[n] >= 0.5 else "sample-specific")
        assert row["kind"] == line["kind"] == kind
    agnostic = [[n // n_heads, n % n_heads] for n in range(n_layers * n_heads) if in_split[n] and above[n] >= 0.5]
    specific = [[n // n_heads, n % n_heads] for n in range(n_layers * n_heads) if in_split[n] and above[n] < 0.5]
    assert doc["split"]["sample_agnostic"] == agnostic and doc["split"]["sample_specific"] == specific

    # top-k per layer by mean θ, and each head's rank in its layer
    means = thetas.mean(axis=0).reshape(n_layers, n_heads)
    assert doc["top_k"]["k"] == 2
    for layer in range(n_layers):
        order = sorted(range(n_heads), key=lambda h: (-means[layer, h], h))
        assert doc["top_k"]["layers"][layer] == order[:2]
        for rank, head in enumerate(order, start=1):
            assert doc["heads"][layer * n_heads + head]["rank_in_layer"] == rank


def test_the_ratio_sweep_is_chosen_by_its_settings_hash(store, tiny_llava, tmp_path):
    from hearlib.records.store import Store

    s = Store(store, clean=False)
    sweep = {k.split("/")[2] for k in s.keys() if "/attribution-" in k and s.get(k).meta["settings"]["ratio"] == 0.5}
    assert len(sweep) == 1
    digest = sweep.pop().split("-", 1)[1]
    done = _heads("--store", store, "--model", tiny_llava, "--out", tmp_path / "h.json", "--csv", tmp_path / "t.csv",
                  "--settings", digest)
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["settings"]["attribution"]["ratio"] == 0.5 and doc["settings"]["validation"]["criteria"] == ["HeAr"]
    assert doc["n_samples"] == {"attribution": N_SAMPLES, "validation": N_SAMPLES}
    assert (tmp_path / "t.csv").is_file()


def test_bad_input_is_one_line_and_exit_2(store, tiny_llava, tmp_path):
    out = tmp_path / "h.json"
    missing = _heads("--store", tmp_path / "nowhere", "--model", tiny_llava, "--out", out)
    other = _heads("--store", store, "--model", "no-such-model", "--out", out)
    # the same records under a second model id whose path ends like the first: ambiguous
    twin = tmp_path / "twin"
    shutil.copytree(store, twin)
    for meta_file in list((twin).glob("*/*/*/*/meta.json")):
        first = meta_file.relative_to(twin).parts[0]
        target = twin / f"{first}-twin" / meta_file.parent.relative_to(twin / first)
        shutil.copytree(meta_file.parent, target)
        meta = json.loads((target / "meta.json").read_text())
        meta["model_id"] = meta["model_id"] + "-twin"
        (target / "meta.json").write_text(json.dumps(meta))
    ambiguous = _heads("--store", twin, "--model", Path(tiny_llava).name, "--out", out)
    for done, words in ((missing, "store not found"), (other, "no attribution or validation records"),
                        (ambiguous, "ambiguous")):
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and lines[0].startswith("hearlib heads: error:"), lines
    assert not out.exists()
