"""Specification of hearlib.paper.analysis against synthetic evaluate functions and explicit loops."""
from __future__ import annotations

import numpy as np
import pytest

from hearlib.paper import analysis as A
from hearlib.method import effects as EF
from hearlib.method.attribution import pearson
from hearlib.method.masks import sample_head_masks


class Linear:
    """π(x, u, v) = (Σ_n w_n x_n)(Σ_i a_i u_i)(Σ_j b_j v_j), with Σw = Σa = Σb = 1 so π(1) = 1, π(0) = 0.

    Records every call so the tests can count batches.
    """

    def __init__(self, w, a=None, b=None):
        self.w = np.asarray(w, float)
        self.a = None if a is None else np.asarray(a, float)
        self.b = None if b is None else np.asarray(b, float)
        self.calls = []

    def __call__(self, heads, text=None, image=None):
        heads = np.asarray(heads, bool)
        self.calls.append((heads.copy(), None if text is None else np.asarray(text).copy(),
                           None if image is None else np.asarray(image).copy()))
        out = heads.astype(float) @ self.w
        if self.a is not None:
            out = out * ((np.ones((len(heads), self.a.size)) if text is None else np.asarray(text, float)) @ self.a)
        if self.b is not None:
            out = out * ((np.ones((len(heads), self.b.size)) if image is None else np.asarray(image, float)) @ self.b)
        return out


W = np.array([0.05, 0.4, 0.0, 0.3, 0.15, 0.1])     # N = 6, sums to 1


def test_single_head_delta_is_the_weight_and_one_batch():
    f = Linear(W)
    delta = EF.single_head_delta(f, 6)
    np.testing.assert_allclose(delta, W)             # 1 − (1 − w_n)
    assert len(f.calls) == 1 and f.calls[0][0].shape == (6, 6)
    np.testing.assert_array_equal(f.calls[0][0].sum(axis=1), np.full(6, 5))


def test_share_without_important_head():
    deltas = np.array([[0.01, 0.02], [0.06, 0.0], [0.05, 0.05], [0.0, 0.3]])
    assert EF.share_without_important_head(deltas, 0.05) == pytest.approx(0.5)   # > 0.05 strictly
    np.testing.assert_array_equal(EF.samples_without_important_head(deltas, 0.05), [True, False, True, False])


def test_validation_curves_match_hand_computation():
    f = Linear(W)
    order = np.array([1, 3, 4, 5, 0, 2])
    curves = EF.validation_curves(f, order)
    faith = np.cumsum(W[order])                       # top k intact
    np.testing.assert_allclose(curves.faithfulness, faith)
    np.testing.assert_allclose(curves.completeness, 1 - faith)
    np.testing.assert_allclose(curves.faithfulness, [0.4, 0.7, 0.85, 0.95, 1.0, 1.0])
    assert len(f.calls) == 2 and all(c[0].shape == (6, 6) for c in f.calls)
    # mask k keeps exactly the first k heads of the order
    for k in range(1, 7):
        expected = np.zeros(6, bool)
        expected[order[:k]] = True
        np.testing.assert_array_equal(f.calls[0][0][k - 1], expected)
        np.testing.assert_array_equal(f.calls[1][0][k - 1], ~expected)
    assert curves.min_heads(0.8, 0.2) == (3, 3)      # 0.85 > 0.8; 1 − 0.85 = 0.15 < 0.2


def test_curve_masks_refuses_non_permutation():
    with pytest.raises(ValueError):
        EF.curve_masks(np.array([0, 0, 1]))


def test_min_heads_on_known_curves():
    faith = np.array([0.1, 0.5, 0.8, 0.81, 1.0])
    assert EF.min_heads(faith, 0.8, "faithfulness") == 4       # strict >
    assert EF.min_heads(faith, 0.05, "faithfulness") == 1
    assert EF.min_heads(faith, 1.0, "faithfulness") == 6       # never: N + 1
    comp = np.array([0.9, 0.3, 0.2, 0.1, 0.0])
    assert EF.min_heads(comp, 0.2, "completeness") == 4        # strict <
    assert EF.min_heads(comp, 0.0, "completeness") == 6
    np.testing.assert_array_equal(EF.min_heads_sweep(faith, [0.5, 0.6, 0.7, 0.8, 0.9]), [3, 3, 3, 4, 5])
    with pytest.raises(ValueError):
        EF.min_heads(faith, 0.5, "other")


def test_hear_beats_other_orders_on_a_linear_model():
    # the HeAr order (true weights) is optimal for faithfulness on an additive π
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(40, 0.3))
    f = Linear(w)
    orders = EF.criterion_orders(theta=w, attention=rng.random(40), delta=EF.single_head_delta(f, 40),
                                rng=np.random.default_rng(1))
    assert set(orders) == set(EF.CRITERIA)
    k = {name: EF.validation_curves(f, o).min_heads()[0] for name, o in orders.items()}
    assert k["HeAr"] <= min(k.values()) and k["HeAr"] == k["Causal"]   # Δ_n = w_n for a linear π
    assert k["HeAr"] < k["Random"]


def test_ranking_is_descending_stable_nan_last():
    np.testing.assert_array_equal(EF.ranking(np.array([0.1, 0.3, 0.3, np.nan, -1.0])), [1, 2, 0, 4, 3])
    np.testing.assert_array_equal(EF.ranking(np.array([[1.0, 3.0], [2.0, 0.0]])), [1, 2, 0, 3])


def test_random_order_is_seeded():
    a = EF.random_order(50, np.random.default_rng(5))
    np.testing.assert_array_equal(a, EF.random_order(50, np.random.default_rng(5)))
    assert sorted(a) == list(range(50))
    with pytest.raises(TypeError):
        EF.random_order(5, 5)


def test_minimal_head_set():
    f = Linear(W)
    x = EF.minimal_head_set(W, f, 0.8)
    np.testing.assert_array_equal(x, [False, True, False, True, True, False])   # 0.4+0.3+0.15 = 0.85
    curve = EF.validation_curves(Linear(W), EF.ranking(W)).faithfulness
    np.testing.assert_array_equal(EF.minimal_head_set(W, faithfulness=curve), x)
    assert EF.minimal_head_set(W, f, 1.5).all()                                   # never reached -> all


def test_text_tokens_against_hand_computation():
    a = np.array([0.5, 0.02, 0.3, 0.18])
    f = Linear(W, a=a)
    x = np.array([False, True, False, True, True, False])
    res = EF.text_tokens(f, x, 4)
    pi_x = 0.85
    assert res.pi_star == pytest.approx(pi_x)
    np.testing.assert_allclose(res.delta, a)                                    # 1 − π(x, u¬i)/π(x) = a_i
    np.testing.assert_array_equal(res.u_star, [True, False, True, True])
    assert res.pi_u_star == pytest.approx(pi_x * 0.98)
    assert res.ratio == pytest.approx(0.98)
    assert len(f.calls) == 2 and f.calls[0][0].shape == (5, 6)
    assert (f.calls[0][0] == x).all() and (f.calls[1][0] == x).all()


def test_image_tokens_recover_token_weights():
    rng = np.random.default_rng(2)
    b = rng.dirichlet(np.full(16, 0.5))
    f = Linear(W, a=np.full(3, 1 / 3), b=b)
    x = np.ones(6, bool)
    u = np.ones(3, bool)
    res = EF.image_tokens(f, x, u, 16, 2000, np.random.default_rng(0))
    assert res.masks.shape == (2000, 16) and ((~res.masks).sum(axis=1) == 12).all()
    assert np.corrcoef(res.theta, b)[0, 1] > 0.99
    assert res.fit.r2 > 0.99
    res2 = EF.image_tokens(Linear(W, a=np.full(3, 1 / 3), b=b), x, u, 16, 2000, np.random.default_rng(0))
    np.testing.assert_array_equal(res.theta, res2.theta)


def test_image_attention_weight_eq10():
    rng = np.random.default_rng(0)
    att = rng.random((2, 3, 4, 9))
    expected = np.zeros((2, 3))
    for l in range(2):
        for h in range(3):
            expected[l, h] = np.mean([att[l, h, i, :].sum() for i in range(4)])
    np.testing.assert_allclose(EF.image_attention_weight(att), expected)


def test_weighted_image_attention_eq13_against_loop():
    rng = np.random.default_rng(1)
    L, H, P, Q = 3, 2, 5, 16
    att = rng.random((L, H, P, Q)).astype(np.float32)
    theta = rng.normal(size=L * H)
    x = rng.random(L * H) > 0.4
    delta = rng.normal(size=P)
    u = delta > 0
    expected = np.zeros(Q)
    for n in range(L * H):
        l, h = divmod(n, H)
        for i in range(P):
            for j in range(Q):
                expected[j] += x[n] * theta[n] * u[i] * delta[i] * att[l, h, i, j]
    w = EF.weighted_image_attention(x, theta, u, delta, att)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    grid = EF.weighted_image_attention(x, theta, u, delta, att, grid=True)
    assert grid.shape == (4, 4)
    np.testing.assert_allclose(grid[1, 2], expected[6], rtol=1e-6)      # row-major
    clipped = EF.weighted_image_attention(x, theta, u, delta, att, clip_negative=True)
    exp_clip = np.einsum("n,i,nij->j", x * np.clip(theta, 0, None), u * np.clip(delta, 0, None),
                         att.reshape(L * H, P, Q).astype(float))
    np.testing.assert_allclose(clipped, exp_clip, rtol=1e-6)


def test_to_grid():
    assert EF.to_grid(np.arange(576)).shape == (24, 24)
    assert EF.to_grid(np.arange(6), (2, 3))[1, 0] == 3
    with pytest.raises(ValueError):
        EF.to_grid(np.arange(10))


def test_head_distribution_and_depth():
    xs = np.zeros((4, 6), bool)
    xs[:, 1] = True
    xs[:2, 5] = True
    dist = A.head_distribution(xs, 3, 2)
    assert dist.shape == (3, 2)
    assert dist[0, 1] == 1.0 and dist[2, 1] == 0.5 and dist.sum() == 1.5
    np.testing.assert_allclose(A.relative_depth(3, 2), [0, 0, 0.5, 0.5, 1, 1])


def test_head_vectors_and_clustering():
    thetas = np.zeros((6, 5))
    thetas[:3, 0] = 0.5          # heads 0 and 3 share a pattern, head 4 another
    thetas[:3, 3] = 0.45
    thetas[3:, 4] = 0.6
    thetas[:, 2] = 0.05          # never above 0.1
    heads, vectors = EF.head_vectors(thetas, 0.1)
    np.testing.assert_array_equal(heads, [0, 3, 4])
    assert vectors.shape == (3, 6)
    cl = A.cluster_head_vectors(vectors)
    assert sorted(cl.row_order) == [0, 1, 2] and sorted(cl.col_order) == list(range(6))
    # heads 0 and 3 (rows 0, 1) are adjacent in the leaf order and merge first
    pos = {r: i for i, r in enumerate(cl.row_order)}
    assert abs(pos[0] - pos[1]) == 1
    assert set(cl.row_linkage[0, :2].astype(int)) == {0, 1}


def test_cosine_helpers():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, -1.0], [1.0, 0.0]])
    sims = A.paired_cosine(a, b)
    np.testing.assert_allclose(sims[:2], [1.0, 0.0], atol=1e-12)
    assert np.isnan(sims[2])
    assert A.cosine_similarity([3, 4], [4, 3]) == pytest.approx(24 / 25)
    m, s = A.mean_std(sims)
    assert m == pytest.approx(0.5) and s == pytest.approx(0.5)


def test_engine_evaluator_adapts_normalized():
    class FakeEngine:
        def normalized(self, sample, means, heads, text=None, image=None, method="fast"):
            assert sample == "s" and means == "m" and method == "literal"
            return np.asarray(heads, float).mean(axis=1)

    ev = EF.engine_evaluator(FakeEngine(), "s", "m", method="literal")
    np.testing.assert_allclose(ev(np.array([[True, False], [True, True]])), [0.5, 1.0])


def test_attribution_on_masks_ranks_heads_like_the_truth():
    # end to end: masks -> π -> θ -> x*, on a synthetic non-linear (saturating) π
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.full(30, 0.2))

    def evaluate(heads, text=None, image=None):
        s = heads.astype(float) @ w
        return np.tanh(2.5 * s) / np.tanh(2.5)

    from hearlib.method.attribution import fit_attribution

    masks = sample_head_masks(30, 2000, 0.75, rng)
    fit = fit_attribution(masks, evaluate(masks))
    assert np.corrcoef(fit.coef, w)[0, 1] > 0.95
    x = EF.minimal_head_set(fit.coef, evaluate, 0.8)
    assert evaluate(x[None])[0] > 0.8


# ----------------------------------------------------------------------------- helpers behind the notebooks

def test_min_heads_per_criterion_matches_min_heads_per_row():
    faith = np.array([[0.5, 0.9, 1.0], [0.1, 0.2, 1.0]])          # criterion 0: k = 2; criterion 1: k = 3
    comp = np.array([[0.1, 0.0, 0.0], [0.5, 0.3, 0.3]])           # criterion 0: k = 1; criterion 1: never (N + 1)
    entries = [{"faithfulness": faith, "completeness": comp}, {"faithfulness": faith[::-1], "completeness": comp[::-1]}]
    kf, kc = A.min_heads_per_criterion(entries)
    assert kf.dtype == np.int64 and kf.shape == (2, 2)
    assert kf.tolist() == [[2, 3], [3, 2]]
    assert kc.tolist() == [[1, 4], [4, 1]]
    kf, kc = A.min_heads_per_criterion(entries, faithfulness=0.95, completeness=0.35)
    assert kf.tolist() == [[3, 3], [3, 3]] and kc.tolist() == [[1, 2], [2, 1]]


def test_heldout_prediction_is_the_fit_on_the_test_split():
    from hearlib.method.attribution import fit_attribution, train_test_indices

    rng = np.random.default_rng(0)
    masks = sample_head_masks(6, 200, 0.5, rng)
    pi = masks.astype(float) @ W
    fit = fit_attribution(masks, pi, seed=3)
    pi_test, pred = A.heldout_prediction(masks, pi, fit.coef, fit.intercept, seed=3)
    _, test = train_test_indices(200, 3)
    assert len(pi_test) == len(test) == 40
    np.testing.assert_allclose(pi_test, pi[test])
    np.testing.assert_allclose(pred, masks[test].astype(float) @ fit.coef + fit.intercept)
    assert pearson(pi_test, pred) == pytest.approx(fit.pearson)


def test_head_name_and_top_share():
    assert A.head_name(0, 4) == "L0H0" and A.head_name(6, 4) == "L1H2" and A.head_name(np.int64(15), 4) == "L3H3"
    values = np.array([5.0, 1.0, 1.0, 1.0, 1.0, 1.0, -3.0, 0.0, 0.0, 0.0])
    assert A.top_share(values) == pytest.approx(0.5)              # top 10% = 1 token of 10: 5 of 10
    assert A.top_share(values, 0.2) == pytest.approx(0.6)
    assert A.top_share(np.array([-1.0, 0.0])) == 0.0
    assert A.top_share(np.array([2.0, 2.0, 0.0])) == pytest.approx(0.5)   # at least one token


def test_token_text_and_answer_in_tokens():
    assert A.token_text("▁ASSISTANT") == "ASSISTANT" and A.token_text("Ġdog") == "dog"
    assert A.token_text(":") == ":" and A.token_text("▁") == "" and A.token_text("<0x0A>") == "\n"
    assert A.answer_in_tokens("cat", ["▁dog", "▁Cat"]) and not A.answer_in_tokens("cat", ["▁cats"])


def test_important_tokens_and_describe_them_in_words():
    tokens = ["▁What", "▁is", "▁this", "?", "▁ASSISTANT", ":"]
    delta = np.array([[0.0, 0.0, 0.12, 0.0, 0.2, 0.9], [0.0, 0.0, 0.0, 0.0, 0.0, 0.7]])
    assert A.important_tokens(delta, 0.05).tolist() == [2, 4, 5]      # the mean over samples
    assert A.important_tokens(delta[1], 0.05).tolist() == [5]
    assert A.describe_tokens(tokens, [5]) == "1 of 6 text tokens: ':' (the last)"
    assert A.describe_tokens(tokens, [2, 4, 5]) == \
        "3 of 6 text tokens: 'this' (3rd of 6), 'ASSISTANT' (2nd from last), ':' (the last)"
    assert A.describe_tokens(tokens, []) == "none of 6 text tokens"
    assert A.describe_tokens(["▁", "<0x0A>", "a", "b", "c"], [0, 1]) == \
        "2 of 5 text tokens: a space (1st of 5), a line break (2nd of 5)"
    assert "**" not in A.describe_tokens(tokens, [5]) and A.describe_tokens(tokens, [5]) != ":"


def test_only_role_and_final():
    tokens = ["▁USER", ":", "▁What", "▁is", "▁it", "?", "▁ASSISTANT", ":"]
    assert A.only_role_and_final(tokens, [7])
    assert A.only_role_and_final(tokens, [5, 6, 7])               # the last three
    assert not A.only_role_and_final(tokens, [1, 7])              # the ':' after USER is not the final one
    assert not A.only_role_and_final(tokens, [])
    assert A.only_role_and_final(["▁ASSISTANT", "a", "b", "c", "d"], [0])   # a role token anywhere


def test_same_label_rate_on_a_hand_built_example():
    # two tight pairs (a, a) and (b, b) plus a lone c next to the b pair
    x = np.array([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99], [0.1, 1.0]])
    groups = np.array(["a", "a", "b", "b", "c"])
    rate, chance = A.same_label_rate(x, groups)
    # nearest neighbours (cosine): 0→1, 1→0, 2→3, 3→2 (same label); 4→3 (b ≠ c)
    assert rate == pytest.approx(4 / 5)
    assert chance == pytest.approx((2 * 1 + 2 * 1) / (5 * 4))
    # scale does not matter (cosine)
    assert A.same_label_rate(x * np.array([[1], [5], [2], [0.1], [3]]), groups) == (rate, chance)
    all_same, chance_same = A.same_label_rate(np.eye(3), ["k", "k", "k"])
    assert all_same == 1.0 and chance_same == 1.0
    with pytest.raises(ValueError):
        A.same_label_rate(np.ones((1, 2)), ["a"])


def test_tsne_embedding_shape_and_determinism():
    pytest.importorskip("openTSNE")
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (12, 8)) + 3 * np.eye(8)[0], rng.normal(0, 0.1, (12, 8)) + 3 * np.eye(8)[1]])
    a = A.tsne_embedding(x, seed=1)
    b = A.tsne_embedding(x, seed=1)
    assert a.shape == (24, 2) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, A.tsne_embedding(x, seed=2))
    assert A.same_label_rate(a, [0] * 12 + [1] * 12)[0] == 1.0        # the two clusters stay apart
    assert A.tsne_perplexity(1000) == 30.0 and A.tsne_perplexity(24) == pytest.approx(23 / 3)
    assert A.tsne_perplexity(4) == 2.0


def test_cross_domain_cosines_splits_same_scene_and_same_class():
    thetas = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    domains = ["real", "sketch", "real", "sketch", "real"]
    scenes = ["s1", "s1", "s2", "s3", "s4"]
    labels = ["cat", "cat", "cat", "cat", "dog"]
    same, same_class = A.cross_domain_cosines(thetas, domains, scenes, labels)
    np.testing.assert_allclose(same, [1.0])                          # (0, 1)
    # different domain, different scene, same class: (0, 3), (1, 2), (2, 3); dog is skipped
    np.testing.assert_allclose(same_class, [1 / np.sqrt(2), 0.0, 1 / np.sqrt(2)])


def test_type_cosines_against_scipy_per_pair():
    from scipy.spatial.distance import cosine as cosine_distance

    rng = np.random.default_rng(3)
    thetas = {name: rng.normal(size=(5, 16)) for name in ("object", "color", "position")}
    thetas["color"][2] = 0.0                                   # a zero θ: NaN, not a crash
    sims = A.type_cosines(thetas)
    assert sims.shape == (5, 3, 3)
    names = list(thetas)
    for s in range(5):
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if s == 2 and "color" in (a, b):
                    assert np.isnan(sims[s, i, j])
                else:
                    assert sims[s, i, j] == pytest.approx(1.0 - cosine_distance(thetas[a][s], thetas[b][s]))
    assert np.allclose(sims[0].diagonal(), 1.0)


def test_layer_share_by_hand():
    # 2 layers × 3 heads; negative θ count as 0
    thetas = np.array([[1.0, -2.0, 1.0, 2.0, 0.0, 0.0],
                       [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0],
                       [0.0, 0.0, 3.0, 1.0, 0.0, 0.0]])
    share = A.layer_share(thetas, 2, 3)
    assert share[0] == pytest.approx([0.5, 0.5])
    assert np.isnan(share[1]).all()
    assert share[2] == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError):
        A.layer_share(thetas, 3, 3)


def test_specific_heads_by_hand():
    mean = {"object": np.array([5.0, 4.0, 0.0, 0.0, 1.0]),
            "color": np.array([5.0, 0.0, 4.0, 0.0, 0.0]),
            "kind": np.array([4.0, 5.0, 0.0, 0.0, 0.0])}
    out = A.specific_heads(mean, k=2)
    # tops: object {0, 1}, color {0, 2}, kind {1, 0}
    assert out["object"].tolist() == [] and out["kind"].tolist() == []
    assert out["color"].tolist() == [2]
    out3 = A.specific_heads(mean, k=3)
    # tops: object [0, 1, 4], color [0, 2, 1] (tie: lower index first), kind [1, 0, 2]
    assert out3["object"].tolist() == [4] and out3["color"].tolist() == [] and out3["kind"].tolist() == []


def test_same_label_hits_are_the_rate_per_sample():
    x = np.array([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99], [0.1, 1.0]])
    groups = ["a", "a", "b", "b", "c"]
    np.testing.assert_array_equal(A.same_label_hits(x, groups), [True, True, True, True, False])
    assert A.same_label_hits(x, groups).mean() == A.same_label_rate(x, groups)[0]


def test_bootstrap_interval_of_a_share_matches_the_normal_approximation():
    hits = np.r_[np.ones(30), np.zeros(10)]                  # 0.75 of 40 samples
    low, high = A.bootstrap_interval(hits)
    half = 1.96 * np.sqrt(0.75 * 0.25 / 40)                  # Wald interval: 0.616-0.884
    assert low < 0.75 < high
    assert low == pytest.approx(0.75 - half, abs=0.03) and high == pytest.approx(0.75 + half, abs=0.03)
    assert A.bootstrap_interval(hits, seed=0) == (low, high)              # reproducible
    wider = A.bootstrap_interval(np.r_[np.ones(6), np.zeros(2)])         # the same share on 8 samples
    assert wider[1] - wider[0] > high - low
    assert A.bootstrap_interval([0.9] * 5) == (0.9, 0.9)
    assert A.bootstrap_interval([0.5, np.nan, 0.7, 0.6])[0] >= 0.5       # NaNs left out
    assert all(np.isnan(A.bootstrap_interval([0.5])))


def test_six_cells_show_intervals_where_the_row_has_them():
    from types import SimpleNamespace

    from hearlib.paper.organisms import six_cells

    row = dict(layer_peak=0, layers=4, depth=0.0, hear_faith=2.0, hear_comp=5.0, r2=0.7, r2_std=0.1, rho=0.9,
               rho_std=0.05, prompt_cos=0.84, no_head=0.9, same=0.6, chance=0.2)
    plain = six_cells(SimpleNamespace(**row))
    assert plain["Table 1"] == "0.84" and plain["Fig. 7"] == "90%" and plain["Fig. 3E"] == "60% (20%)"
    cells = six_cells(SimpleNamespace(**row, prompt_cos_ci=(0.8, 0.88), no_head_ci=(0.8, 0.97), same_ci=(0.45, 0.75),
                                      hear_faith_ci=(1.5, 2.5), hear_comp_ci=(4.0, 6.0)))
    assert cells["Table 1"] == "0.84 [0.80–0.88]" and cells["Fig. 7"] == "90% [80%–97%]"
    assert cells["Fig. 3E"] == "60% [45%–75%] (20%)" and cells["Fig. 3A"] == "2.0 [1.5–2.5] / 5.0 [4.0–6.0]"
