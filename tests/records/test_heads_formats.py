"""``hearlib heads --format hearlib|sparsemm|per-layer`` and ``hearlib heads diff``, on a synthetic
store (records written with :meth:`Store.put` as ``hearlib run`` writes them, θ and x* drawn at
random): each format reads back to the numbers it was written from, the SparseMM file loads the way
SparseMM's own loader reads it, only the records the chosen set needs are opened, and a model
compared with itself gives an empty diff."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hearlib.cli import main
from hearlib.records import heads as heads_module
from hearlib.records.heads import (diff_heads, export, head_data, read_heads, read_per_layer, read_sparsemm,
                                   to_csv)
from hearlib.records.store import Store, settings_hash, slug

N_LAYERS, N_HEADS, N_KV = 3, 4, 2
CRITERIA = ["HeAr", "Random", "Attention", "Causal"]


def put_study(store: Store, model: str, dataset: str, thetas, x_star, *, ratio=0.75, criteria=CRITERIA,
              domains=None, seed=0) -> None:
    """Attribution and validation records of one model and dataset, keyed like ``hearlib run``'s."""
    model_id = f"{model}-0123abcd"
    attribution = {"stage": "attribution", "versions": {"attribution": 1}, "prompt": None, "n_masks": 100,
                   "ratio": ratio, "seed": seed}
    validation = {**attribution, "stage": "validation", "threshold": 0.8, "criteria": list(criteria)}
    for stage, settings, arrays in (("attribution", attribution, [{"theta": t} for t in thetas]),
                                    ("validation", validation, [{"x_star": x} for x in x_star])):
        for i, array in enumerate(arrays):
            sample = f"{i:04d}" if domains is None else f"{domains[i]}/cls/{i:04d}"
            key = f"{slug(model_id)}/{slug(dataset)}/{stage}-{settings_hash(settings)}/{slug(sample)}"
            store.put(key, array, {"stage": stage, "settings": settings, "model": f"/models/{model}",
                                   "model_id": model_id, "dataset": dataset, "data": f"/data/{dataset}",
                                   "sample": sample, "n_layers": N_LAYERS, "n_heads": N_HEADS,
                                   "domain": None if domains is None else domains[i]})


def random_study(rng, n_samples=12):
    n = N_LAYERS * N_HEADS
    thetas = rng.normal(0.05, 0.1, (n_samples, n))
    thetas[:, 2] += 0.3                                   # a head that is clearly in
    x_star = rng.random((n_samples, n)) < np.linspace(0.05, 0.95, n)
    return thetas, x_star


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "store")
    thetas, x_star = random_study(rng)
    put_study(store, "organism-a", "coco", thetas, x_star)
    put_study(store, "organism-a", "coco", *random_study(rng, 5), ratio=0.5, criteria=["HeAr"])   # a ratio sweep
    put_study(store, "organism-b", "coco", *random_study(rng))                                     # another model
    return store, thetas, x_star


def test_each_format_reads_back_to_the_numbers_it_was_written_from(store, tmp_path):
    store, thetas, x_star = store
    data = head_data(store.root, "organism-a")
    doc = data.document
    assert np.array_equal(data.thetas, thetas) and np.array_equal(data.x_star, x_star)
    assert doc["settings"]["attribution"]["ratio"] == 0.75 and doc["n_samples"] == {"attribution": 12,
                                                                                      "validation": 12}
    # hearlib: JSON and CSV
    (tmp_path / "h.json").write_text(export(data, "hearlib"))
    assert read_heads(tmp_path / "h.json") == json.loads(json.dumps(doc))
    rows = list(csv.DictReader(to_csv(doc).splitlines()))
    for row, line in zip(doc["heads"], rows):
        for name in ("theta_mean", "theta_std", "theta_ci_low", "theta_ci_high", "x_star_share"):
            assert float(line[name]) == row[name]
        assert row["theta_ci_low"] <= row["theta_mean"] <= row["theta_ci_high"]
    # per-layer: [layer][head] arrays of the same numbers
    (tmp_path / "p.json").write_text(export(data, "per-layer"))
    layers = read_per_layer(tmp_path / "p.json")
    for name in ("theta_mean", "theta_ci_low", "theta_ci_high", "x_star_share"):
        grid = np.array(layers[name])
        assert grid.shape == (N_LAYERS, N_HEADS)
        assert np.array_equal(grid.ravel(), [r[name] for r in doc["heads"]])
    assert layers["stability"] == json.loads(json.dumps(doc["stability"]))
    # sparsemm: θ per sample, clipped at 0, every head
    (tmp_path / "s.json").write_text(export(data, "sparsemm"))
    assert np.array_equal(read_sparsemm(tmp_path / "s.json", N_LAYERS, N_HEADS), np.maximum(thetas, 0))


def sparsemm_budget_scores(path, n_layers, n_heads, n_kv_heads):
    """SparseMM's loader (sparsemm/sparsemm_utils.py, ``load_head_score`` and ``SparseMM.__init__``
    with ``head_score='visual'``): json.load, the mean of each entry in the file's order as a flat
    [L·H] list, normalised to sum 1, viewed as [L, H/G, G] and summed over each key/value group G."""
    with open(path) as f:
        head_score = json.load(f)
    head_score_list = [np.mean(item[1]) for item in head_score.items()]
    scores = np.array(head_score_list) / sum(head_score_list)
    group = n_heads // n_kv_heads
    return scores.reshape(n_layers, n_heads // group, group).sum(-1)


def test_the_sparsemm_file_loads_as_sparsemms_loader_reads_it(store, tmp_path):
    store, thetas, _ = store
    out = tmp_path / "scores.json"
    assert main(["heads", "--store", str(store.root), "--model", "organism-a", "--format", "sparsemm",
                 "--out", str(out)]) == 0
    text = out.read_text()
    keys = list(json.loads(text))
    assert keys == [f"{l}-{h}" for l in range(N_LAYERS) for h in range(N_HEADS)]    # layer-major, not sorted
    positive = np.maximum(thetas, 0).mean(axis=0)
    expected = (positive / positive.sum()).reshape(N_LAYERS, N_KV, N_HEADS // N_KV).sum(-1)
    np.testing.assert_allclose(sparsemm_budget_scores(out, N_LAYERS, N_HEADS, N_KV), expected, rtol=1e-12)
    beside = read_heads(tmp_path / "scores.hearlib.json")              # the stability lives beside it
    assert beside["stability"]["halves"] is not None and (tmp_path / "scores.csv").is_file()


def test_only_the_records_of_the_chosen_set_are_opened(store, monkeypatch):
    store, _, _ = store
    opened = []
    original = Store.get

    def counting(self, key):
        opened.append(key)
        return original(self, key)

    monkeypatch.setattr(Store, "get", counting)
    doc = head_data(store.root, "organism-a").document
    folders = {key.rsplit("/", 1)[0] for key in opened}
    assert folders == {doc["records"]["attribution"], doc["records"]["validation"]}
    assert len(opened) == doc["n_samples"]["attribution"] + doc["n_samples"]["validation"]


def test_a_model_against_itself_is_an_empty_diff_and_another_shows_its_changes(store, tmp_path, capsys):
    store, _, _ = store
    for model in ("organism-a", "organism-b"):
        (tmp_path / f"{model}.json").write_text(export(head_data(store.root, model), "hearlib"))
    a = read_heads(tmp_path / "organism-a.json")
    b = read_heads(tmp_path / "organism-b.json")
    same = diff_heads(a, a)
    assert same["gained"] == same["lost"] == [] and same["jaccard"] == 1.0
    assert same["spearman_theta"] == pytest.approx(1.0) and same["pearson_theta"] == pytest.approx(1.0)
    other = diff_heads(a, b, "top-k:3")
    set_a = {tuple(h) for h in heads_module.select_heads(a, "top-k:3")}
    set_b = {tuple(h) for h in heads_module.select_heads(b, "top-k:3")}
    assert {tuple(h) for h in other["gained"]} == set_b - set_a and {tuple(h) for h in other["lost"]} == set_a - set_b
    assert {tuple(h) for h in other["kept"]} == set_a & set_b
    assert other["jaccard"] == len(set_a & set_b) / len(set_a | set_b)

    figure, result = tmp_path / "diff.png", tmp_path / "diff.json"
    assert main(["heads", "diff", str(tmp_path / "organism-a.json"), str(tmp_path / "organism-a.json"),
                 "--out", str(figure), "--json", str(result)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.read_text())["gained"] == [] and "0 gained [], 0 lost []" in capsys.readouterr().out
    # bad input: one line, exit 2
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**a, "n_layers": N_LAYERS + 1}))
    for argv, message in ((["heads", "diff", str(tmp_path / "organism-a.json")], "usage: hearlib heads diff"),
                          (["heads", "diff", str(tmp_path / "organism-a.json"), str(wrong)], "different geometries"),
                          (["heads", "diff", str(tmp_path / "organism-a.json"), str(tmp_path / "none.json")],
                           "heads file not found"),
                          (["heads", "--store", str(store.root), "--out", str(tmp_path / "x.json")], "--model required")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
