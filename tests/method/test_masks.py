"""Specification of hearlib.method.masks: exact ablated counts, uniform subsets, explicit seeds."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hearlib.method.masks import n_ablated, sample_head_masks, sample_rng, sample_seed, sample_token_masks


@pytest.mark.parametrize("n, ratio, expected", [(1024, 0.75, 768), (8, 0.75, 6), (10, 0.25, 3), (10, 0.75, 8),
                                                 (2, 0.25, 1), (7, 0.0, 0), (7, 1.0, 7), (576, 0.75, 432)])
def test_n_ablated_is_round_half_up(n, ratio, expected):
    assert n_ablated(n, ratio) == expected


@pytest.mark.parametrize("n, ratio", [(32, 0.75), (13, 0.5), (10, 0.25), (5, 1.0), (6, 0.0), (100, 0.125)])
def test_exact_ablated_count_per_row(n, ratio):
    masks = sample_head_masks(n, 300, ratio, np.random.default_rng(1))
    assert masks.dtype == bool and masks.shape == (300, n)
    k = n_ablated(n, ratio)
    np.testing.assert_array_equal((~masks).sum(axis=1), np.full(300, k))


def test_positions_are_uniform():
    # each position is ablated with probability k/n; 20,000 rows -> std of a frequency ~0.003
    n, m = 12, 20_000
    masks = sample_head_masks(n, m, 0.75, np.random.default_rng(7))
    freq = (~masks).mean(axis=0)
    np.testing.assert_allclose(freq, 9 / 12, atol=0.015)
    # pairs: P(i and j both ablated) = k(k-1)/(n(n-1))
    ab = (~masks).astype(float)
    pair = (ab.T @ ab / m)[np.triu_indices(n, 1)]
    np.testing.assert_allclose(pair, 9 * 8 / (12 * 11), atol=0.015)


def test_all_subsets_appear_equally_often():
    n, k, m = 5, 2, 30_000   # C(5,2) = 10 subsets, each 1/10
    masks = sample_token_masks(n, m, k / n, np.random.default_rng(3))
    codes = (~masks).astype(int) @ (1 << np.arange(n))
    values, counts = np.unique(codes, return_counts=True)
    assert values.size == 10
    np.testing.assert_allclose(counts / m, 0.1, atol=0.01)


def test_same_generator_state_same_masks_and_prefix_property():
    a = sample_head_masks(40, 2500, 0.75, np.random.default_rng(11))
    b = sample_head_masks(40, 2500, 0.75, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    # the first m rows of a draw of M are the draw of m (blocks do not change the stream)
    c = sample_head_masks(40, 1500, 0.75, np.random.default_rng(11))
    np.testing.assert_array_equal(a[:1500], c)
    d = sample_head_masks(40, 2500, 0.75, np.random.default_rng(12))
    assert not np.array_equal(a, d)


def test_requires_explicit_generator():
    with pytest.raises(TypeError):
        sample_head_masks(10, 5, 0.5, None)
    with pytest.raises(TypeError):
        sample_head_masks(10, 5, 0.5, 123)
    with pytest.raises(ValueError):
        sample_head_masks(10, 5, 1.5, np.random.default_rng(0))


def test_sample_seed_is_stable_and_distinct():
    s = sample_seed(0, "000000123456.jpg", "heads")
    assert s == sample_seed(0, "000000123456.jpg", "heads")
    assert 0 <= s < 2**64
    others = {sample_seed(0, "000000123456.jpg", "image"), sample_seed(1, "000000123456.jpg", "heads"),
              sample_seed(0, "000000123457.jpg", "heads"), s}
    assert len(others) == 4
    assert sample_seed(0, 5) == sample_seed(0, "5")   # the id is hashed as text
    r1 = sample_rng(3, "x").random(4)
    r2 = sample_rng(3, "x").random(4)
    np.testing.assert_array_equal(r1, r2)


def test_sample_seed_is_the_same_in_another_process():
    # Python's hash() is salted per process; sample_seed must not depend on it
    code = "from hearlib.method.masks import sample_seed; print(sample_seed(42, 'cat/001.png', 'heads'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"})
    assert int(out.stdout.strip()) == sample_seed(42, "cat/001.png", "heads")
