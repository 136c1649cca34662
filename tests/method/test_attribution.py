"""Specification of hearlib.method.attribution against synthetic linear π and independent computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from hearlib.method.attribution import (fit_attribution, pearson, r2_by_mask_count, stable_mask_count,
                                 train_test_indices)
from hearlib.method.masks import sample_head_masks


def _linear_problem(n=64, m=3000, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    w = np.zeros(n)
    w[:8] = rng.uniform(0.05, 0.2, 8)            # a few important heads
    w[8:] = rng.normal(0, 0.005, n - 8)           # many small ones
    masks = sample_head_masks(n, m, 0.75, rng)
    clean = masks.astype(float) @ w
    pi = clean + rng.normal(0, noise, m)
    return w, masks, clean, pi, noise


def test_recovers_weights_of_a_linear_pi():
    w, masks, clean, pi, noise = _linear_problem()
    fit = fit_attribution(masks, pi, seed=0)
    assert fit.coef.shape == w.shape and fit.coef.dtype == np.float64
    assert np.corrcoef(fit.coef, w)[0, 1] > 0.99
    np.testing.assert_allclose(fit.coef[:8], w[:8], atol=0.01)
    assert fit.n_train == 2400 and fit.n_test == 600
    # true explained variance on held-out data = var(clean) / (var(clean) + noise²)
    true_r2 = clean.var() / (clean.var() + noise**2)
    assert abs(fit.r2 - true_r2) < 0.03
    assert abs(fit.pearson - np.sqrt(true_r2)) < 0.03


def test_scores_match_an_independent_computation_on_the_split():
    w, masks, clean, pi, _ = _linear_problem(n=32, m=500, seed=4)
    fit = fit_attribution(masks, pi, seed=9)
    train, test = train_test_indices(500, seed=9)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 500 and len(train) == 400
    pred = masks[test].astype(float) @ fit.coef + fit.intercept
    resid = pi[test] - pred
    r2 = 1 - resid.var() / pi[test].var()       # explained variance, by hand
    assert fit.r2 == pytest.approx(r2, abs=1e-10)
    assert fit.pearson == pytest.approx(pearsonr(pi[test], pred)[0], abs=1e-10)
    np.testing.assert_allclose(fit.predict(masks[test]), pred)


def test_uses_the_paper_elasticnet():
    from sklearn.linear_model import ElasticNet

    w, masks, clean, pi, _ = _linear_problem(n=24, m=400, seed=2)
    fit = fit_attribution(masks, pi, seed=1)
    train, _ = train_test_indices(400, seed=1)
    ref = ElasticNet(alpha=0.0005, l1_ratio=0.5, max_iter=1000).fit(masks[train].astype(float), pi[train])
    np.testing.assert_allclose(fit.coef, ref.coef_, atol=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept_)


def test_deterministic_given_seed():
    _, masks, _, pi, _ = _linear_problem(n=16, m=300, seed=5)
    a, b = fit_attribution(masks, pi, seed=3), fit_attribution(masks, pi, seed=3)
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.r2 == b.r2 and a.pearson == b.pearson
    c = fit_attribution(masks, pi, seed=4)
    assert c.r2 != a.r2


def test_bad_input_is_refused():
    masks = np.ones((10, 3), dtype=bool)
    with pytest.raises(ValueError):
        fit_attribution(masks, np.zeros(9))
    with pytest.raises(ValueError):
        fit_attribution(masks, np.full(10, np.nan))
    with pytest.raises(ValueError):
        fit_attribution(masks[0], np.zeros(3))


def test_pearson_edge_cases():
    assert np.isnan(pearson(np.ones(5), np.arange(5)))
    assert pearson(np.arange(5), 2 * np.arange(5) + 1) == pytest.approx(1.0)
    assert pearson(np.arange(5), -np.arange(5.0)) == pytest.approx(-1.0)


def test_r2_by_mask_count_rises_and_matches_prefix_fits():
    w, masks, clean, pi, _ = _linear_problem(n=64, m=2000, noise=0.02, seed=6)
    counts = [50, 100, 400, 1000, 2000]
    curve = r2_by_mask_count(masks, pi, counts, seed=0)
    assert curve.shape == (5,)
    assert curve[-1] > curve[0]
    assert curve[3] == pytest.approx(fit_attribution(masks[:1000], pi[:1000], seed=0).r2)
    with pytest.raises(ValueError):
        r2_by_mask_count(masks, pi, [5000])


def test_stable_mask_count_rule():
    counts = [100, 200, 400, 800, 1600, 3200]
    curve = [0.2, 0.6, 0.80, 0.805, 0.806, 0.806]
    # steps: .4 .2 .005 .001 0 -> two consecutive steps < 0.01 end at index 4
    assert stable_mask_count(curve, tol=0.01, counts=counts, patience=2) == 1600
    assert stable_mask_count(curve, tol=0.01, counts=counts, patience=1) == 800
    assert stable_mask_count(curve, tol=0.0001, counts=counts, patience=2) is None
    assert stable_mask_count([0.1, 0.1, 0.1], tol=0.01) == 3     # default counts = 1, 2, 3
    with pytest.raises(ValueError):
        stable_mask_count(curve, counts=counts[:-1])
