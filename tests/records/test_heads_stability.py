"""The stability every exported head set carries (:func:`hearlib.records.heads.stability`), on
synthetic θ and x*: bootstrap intervals that cover the true mean at their level, Jaccard overlaps
of x* between halves, datasets and styles that are 1 for identical sets and low for unrelated ones,
and the curve against the sample count; and a synthetic store with two datasets and three styles."""
from __future__ import annotations

import numpy as np

from hearlib.records.heads import bootstrap_interval, head_data, jaccard, majority, sample_counts, stability
from hearlib.records.store import Store

from test_heads_formats import N_HEADS, N_LAYERS, put_study, random_study


def test_bootstrap_intervals_cover_the_true_mean_at_their_level():
    rng = np.random.default_rng(1)
    truth = np.linspace(-0.2, 0.4, 50)                         # 50 heads, each a coverage trial per draw
    covered = []
    for draw in range(40):
        thetas = truth + rng.normal(0, 0.1, (30, truth.size))
        low, high = bootstrap_interval(thetas, seed=draw)
        assert np.all(low <= thetas.mean(0)) and np.all(thetas.mean(0) <= high)
        covered.append((low <= truth) & (truth <= high))
    assert 0.90 <= np.mean(covered) <= 0.98                      # percentile bootstrap, n = 30: a little under 0.95
    same = np.tile(truth, (7, 1))
    low, high = bootstrap_interval(same)
    assert np.allclose(low, truth) and np.allclose(high, truth)  # no spread, no interval


def test_jaccard_and_the_majority_set():
    a = np.array([1, 1, 0, 0], bool)
    assert jaccard(a, a) == 1.0 and jaccard(a, ~a) == 0.0 and jaccard(a, [1, 0, 1, 0]) == 1 / 3
    assert jaccard(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    assert majority([[1, 0, 1], [1, 0, 0]]).tolist() == [True, False, True]
    assert sample_counts(1) == [1] and sample_counts(37) == [1, 2, 5, 10, 20, 37] and sample_counts(10) == [1, 2, 5, 10]


def test_identical_samples_are_perfectly_stable_and_unrelated_ones_are_not():
    rng = np.random.default_rng(2)
    n = 24
    fixed = np.zeros(n, bool)
    fixed[[1, 5, 7]] = True
    thetas = rng.normal(0, 0.1, (40, n)) + 0.15 * fixed
    steady = stability(thetas, np.tile(fixed, (40, 1)))
    assert steady["halves"]["min"] == steady["halves"]["max"] == 1.0 and steady["set_size"] == 3
    curve = steady["by_n_samples"]
    assert curve["n"] == [1, 2, 5, 10, 20, 40] and curve["x_star_jaccard"] == [1.0] * 6
    assert curve["top_k"] == 3 and curve["top_k_jaccard"][-1] == 1.0
    assert curve["top_k_jaccard"][0] < curve["top_k_jaccard"][-2] <= 1.0    # one sample's top-3 is noisy
    noisy = stability(thetas, rng.random((40, n)) < 0.45)
    assert noisy["halves"]["mean"] < 0.8
    assert noisy["by_n_samples"]["x_star_jaccard"][-1] == 1.0


def test_datasets_and_styles_are_compared_where_the_store_has_them(tmp_path):
    rng = np.random.default_rng(3)
    store = Store(tmp_path / "store")
    thetas, x_star = random_study(rng, n_samples=12)
    domains = ["real", "sketch", "clipart"] * 4
    x_star[[i for i, d in enumerate(domains) if d == "sketch"]] = x_star[0]   # sketch: one set, 4 times
    put_study(store, "organism", "domainnet", thetas, x_star, domains=domains)
    put_study(store, "organism", "coco", thetas[:6], x_star[:6])                # the same settings, another dataset
    doc = head_data(store.root, "organism", dataset="domainnet").document
    stable = doc["stability"]
    full = majority(x_star)
    assert stable["datasets"] == [{"dataset": "coco", "n_samples": 6, "jaccard": jaccard(full, majority(x_star[:6]))}]
    styles = stable["styles"]
    assert styles["n_samples"] == {"clipart": 4, "real": 4, "sketch": 4}
    labels = np.array(domains)
    sets = {d: majority(x_star[labels == d]) for d in ("clipart", "real", "sketch")}
    assert styles["pairs"] == [{"a": a, "b": b, "jaccard": jaccard(sets[a], sets[b])}
                               for a, b in (("clipart", "real"), ("clipart", "sketch"), ("real", "sketch"))]
    assert sets["sketch"].tolist() == x_star[0].tolist()
    assert len(doc["heads"]) == N_LAYERS * N_HEADS and "theta_ci_low" in doc["heads"][0]
    again = head_data(store.root, "organism", dataset="domainnet").document["stability"]
    assert again == stable                                                       # seeded: the same numbers
