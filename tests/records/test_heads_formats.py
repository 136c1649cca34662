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


# SparseMM's loader, as in github.com/CR400AF-A/SparseMM, sparsemm/sparsemm_utils.py (commit f52655b),
# quoted line for line: it reads one fixed path per model family, relative to the working directory.
def load_head_score(model_type):
    if 'llava' in model_type:
        if 'mistral' not in model_type:
            head_score_path = './visual_head/head_score/llava-v1.6.json'
        else:
            head_score_path = './visual_head/head_score/llava-mistral-v1.6.json'
    elif 'qwen' in model_type:
        head_score_path = './visual_head/head_score/qwen.json'
    else:
        raise NotImplementedError
    with open(head_score_path, 'r') as f:
        head_score = json.load(f)
    return head_score


def sparsemm_budget_scores(path, n_layers, n_heads, n_kv_heads, monkeypatch):
    """``SparseMM.__init__`` with ``head_score='visual'`` on the file at ``path``, put where
    ``load_head_score`` looks for Qwen2-VL: each head's share of the budget, per key/value head [L, H/G]."""
    import torch

    monkeypatch.chdir(_placed(path, "qwen.json"))
    num_hidden_layers, num_attention_heads, num_key_value_groups = n_layers, n_heads, n_heads // n_kv_heads
    # SparseMM.__init__, its lines:
    head_score = load_head_score("qwen2_vl")
    head_score_list = [np.mean(l[1]) for l in head_score.items()]
    head_score_list = torch.tensor(head_score_list / sum(head_score_list))
    score = head_score_list.view(num_hidden_layers, num_attention_heads//num_key_value_groups, num_key_value_groups)
    score = score.sum(dim=-1)
    return score.numpy()


def sparsemm_ranking(path, num, monkeypatch):
    """``init_mask``'s head list (``METHOD=mask``): the ``num`` heads of largest mean score, as [layer, head]."""
    monkeypatch.chdir(_placed(path, "llava-v1.6.json"))
    # init_mask, its lines:
    head_score = load_head_score("llava")
    head_list = [(l[0], np.mean(l[1])) for l in head_score.items()]
    head_list = sorted(head_list, key=lambda x: x[1], reverse=True)
    head_list = [[int(ll) for ll in l[0].split("-")] for l in head_list][:num]
    return head_list


def _placed(path, name):
    """A working directory in which SparseMM's fixed path ``./visual_head/head_score/NAME`` is ``path``."""
    root = path.parent / f"sparsemm-{path.stem}"
    (root / "visual_head" / "head_score").mkdir(parents=True, exist_ok=True)
    (root / "visual_head" / "head_score" / name).write_text(path.read_text())
    return root


def test_the_sparsemm_file_loads_as_sparsemms_loader_reads_it(store, tmp_path, monkeypatch):
    store, thetas, _ = store
    out = tmp_path / "scores.json"
    assert main(["heads", "--store", str(store.root), "--model", "organism-a", "--format", "sparsemm",
                 "--out", str(out)]) == 0
    text = out.read_text()
    keys = list(json.loads(text))
    assert keys == [f"{l}-{h}" for l in range(N_LAYERS) for h in range(N_HEADS)]    # layer-major, not sorted
    positive = np.maximum(thetas, 0).mean(axis=0)
    expected = (positive / positive.sum()).reshape(N_LAYERS, N_KV, N_HEADS // N_KV).sum(-1)
    np.testing.assert_allclose(sparsemm_budget_scores(out, N_LAYERS, N_HEADS, N_KV, monkeypatch), expected,
                               rtol=1e-12)
    beside = read_heads(tmp_path / "scores.hearlib.json")              # the stability lives beside it
    assert beside["stability"]["halves"] is not None and (tmp_path / "scores.csv").is_file()


def test_the_mean_form_makes_sparsemms_ranking_hearlibs_top_k(tmp_path, monkeypatch, capsys):
    """--sparsemm-scores mean: one score per head, mean θ clipped after averaging; SparseMM's ranking
    (init_mask) of the heads with mean θ > 0 is hearlib's top-k by mean θ, and its budget shares are
    max(mean θ, 0) normalised. The per-sample form ranks by the mean of θ clipped per sample instead."""
    rng = np.random.default_rng(5)
    store = Store(tmp_path / "store")
    n = N_LAYERS * N_HEADS
    thetas = rng.normal(0.0, 0.3, (12, n)) + np.linspace(-0.2, 0.2, n)  # mean θ of either sign
    thetas[:, 0] = np.tile([2.0, -1.9], 6)      # mean 0.05, but 1.0 clipped per sample: SparseMM's first
    thetas[:, 1] = 0.8                          # by mean θ, ahead of head 0; behind it clipped per sample
    put_study(store, "organism-a", "coco", thetas, rng.random((12, n)) < 0.5)
    out = tmp_path / "mean.json"
    assert main(["heads", "--store", str(store.root), "--model", "organism-a", "--format", "sparsemm",
                 "--sparsemm-scores", "mean", "--out", str(out)]) == 0
    assert "mean θ, clipped at 0 after averaging" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert list(scores) == [f"{l}-{h}" for l in range(N_LAYERS) for h in range(N_HEADS)]
    assert all(len(v) == 1 for v in scores.values())
    mean = thetas.mean(axis=0)
    np.testing.assert_array_equal(read_sparsemm(out, N_LAYERS, N_HEADS)[0], np.maximum(mean, 0))
    positive = int((mean > 0).sum())
    assert 1 < positive < len(mean)                                    # some heads are clipped
    document = read_heads(tmp_path / "mean.hearlib.json")
    for k in range(1, positive + 1):
        assert sorted(map(tuple, sparsemm_ranking(out, k, monkeypatch))) == heads_module.select_heads(document,
                                                                                                      f"top-k:{k}")
    ranked = [tuple(h) for h in sparsemm_ranking(out, positive, monkeypatch)]
    order = np.lexsort((np.arange(len(mean)), -mean))[:positive]       # in order, not only as sets
    assert ranked == [divmod(int(n), N_HEADS) for n in order]
    clipped = np.maximum(mean, 0)
    np.testing.assert_allclose(sparsemm_budget_scores(out, N_LAYERS, N_HEADS, N_KV, monkeypatch),
                               (clipped / clipped.sum()).reshape(N_LAYERS, N_KV, N_HEADS // N_KV).sum(-1),
                               rtol=1e-12)
    # the per-sample form: SparseMM ranks by the mean of max(θ, 0), written sample by sample
    per_sample = tmp_path / "per-sample.json"
    assert main(["heads", "--store", str(store.root), "--model", "organism-a", "--format", "sparsemm",
                 "--sparsemm-scores", "per-sample", "--out", str(per_sample)]) == 0
    assert "θ per sample, clipped at 0" in capsys.readouterr().out
    expected = [divmod(int(n), N_HEADS) for n in np.lexsort((np.arange(len(mean)), -np.maximum(thetas, 0).mean(0)))]
    assert [tuple(h) for h in sparsemm_ranking(per_sample, len(mean), monkeypatch)] == expected
    assert expected[0] == (0, 0) and ranked.index((0, 1)) < ranked.index((0, 0))   # why the mean form exists


def test_a_sparsemm_file_sparsemm_cannot_load_is_refused(tmp_path, monkeypatch, capsys):
    """Every θ ≤ 0: every score is 0 after clipping, and SparseMM's loader divides by their sum (0).
    Refused in one line, exit 2, nothing written. With mean θ ≤ 0 everywhere but some θ > 0, only the
    mean form is refused."""
    rng = np.random.default_rng(3)
    store = Store(tmp_path / "store")
    n = N_LAYERS * N_HEADS
    put_study(store, "negative", "coco", -np.abs(rng.normal(0.1, 0.05, (6, n))), rng.random((6, n)) < 0.5)
    mixed = np.tile([[0.3], [-0.5]], (3, n))                             # θ > 0 in half the samples, mean < 0
    put_study(store, "mixed", "coco", mixed, rng.random((6, n)) < 0.5)
    # what SparseMM would do with the file: its lines on all-zero scores give no finite share
    zeros = tmp_path / "zeros.json"
    zeros.write_text(json.dumps({f"{l}-{h}": [0.0, 0.0] for l in range(N_LAYERS) for h in range(N_HEADS)}))
    with np.errstate(invalid="ignore"):
        assert not np.isfinite(sparsemm_budget_scores(zeros, N_LAYERS, N_HEADS, N_KV, monkeypatch)).any()
    monkeypatch.chdir(tmp_path)
    for model, form in (("negative", "per-sample"), ("negative", "mean"), ("mixed", "mean")):
        out = tmp_path / f"{model}-{form}.json"
        assert main(["heads", "--store", str(store.root), "--model", model, "--format", "sparsemm",
                     "--sparsemm-scores", form, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("hearlib heads: error: refusing to write a SparseMM score file")
        assert "divide by zero" in err and ("per sample" if form == "per-sample" else "after averaging") in err
        assert not out.exists() and not out.with_suffix(".hearlib.json").exists() and not out.with_suffix(".csv").exists()
    out = tmp_path / "mixed-per-sample.json"
    assert main(["heads", "--store", str(store.root), "--model", "mixed", "--format", "sparsemm",
                 "--out", str(out)]) == 0
    assert np.isfinite(sparsemm_budget_scores(out, N_LAYERS, N_HEADS, N_KV, monkeypatch)).all()
    with pytest.raises(heads_module.UserError, match="SparseMM cannot load"):
        export(head_data(store.root, "negative"), "sparsemm")
    # --sparsemm-scores belongs to --format sparsemm
    assert main(["heads", "--store", str(store.root), "--model", "mixed", "--sparsemm-scores", "mean",
                 "--out", str(tmp_path / "h.json")]) == 2
    assert "applies to --format sparsemm" in capsys.readouterr().err


def test_diff_defaults_to_top_k_and_warns_when_x_star_chooses_nothing(store, tmp_path, capsys):
    store, _, _ = store
    path = tmp_path / "a.json"
    path.write_text(export(head_data(store.root, "organism-a"), "hearlib"))
    document = read_heads(path)
    result = tmp_path / "diff.json"
    assert main(["heads", "diff", str(path), str(path), "--json", str(result)]) == 0
    diff = json.loads(result.read_text())
    assert diff["select"] == heads_module.DEFAULT_SELECT == "top-k:10"
    assert len(diff["kept"]) == 10 and "warning" not in capsys.readouterr().err
    empty = tmp_path / "empty.json"                                    # no head in x* of half the samples
    empty.write_text(json.dumps({**document, "heads": [{**r, "x_star_share": min(r["x_star_share"], 0.25)}
                                                       for r in document["heads"]]}))
    assert main(["heads", "diff", str(empty), str(empty), "--select", "x-star"]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(w.startswith(f"warning: --select x-star chooses no head of {empty}")
                                      and "at least 0.5 of its 12 validation samples" in w
                                      and "share 0.5, the default" in w for w in warnings)
    assert main(["heads", "diff", str(empty), str(path), "--select", "x-star:0.3"]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert str(empty) in warning and "(share 0.3)" in warning and "the default" not in warning


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
