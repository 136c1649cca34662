"""hearlib.paper.plotting: each helper draws what it says (artists, colour bars, labels) without pyplot state."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colorbar import Colorbar  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from hearlib.method import effects as EF  # noqa: E402
from hearlib.method.attribution import pearson  # noqa: E402
from hearlib.paper import plotting as P  # noqa: E402


def colorbars(fig) -> list:
    """The colour bars of a figure (each lives on its own axes, which points back to it)."""
    return [ax._colorbar for ax in fig.axes if isinstance(getattr(ax, "_colorbar", None), Colorbar)]


def renders(fig) -> bool:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.tell() > 0


@pytest.fixture(autouse=True)
def no_pyplot_leaks():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plotting helper left a pyplot figure open"


def test_model_label_names_models_as_given(tmp_path, monkeypatch):
    organism = tmp_path / "models" / "hear-organism-s"
    organism.mkdir(parents=True)
    assert P.model_label("data/models/hear-organism-s") == "hear-organism-s"
    assert P.model_label(str(organism)) == "hear-organism-s"
    assert P.model_label(str(organism) + "/") == "hear-organism-s"
    assert P.model_label(organism) == "hear-organism-s"
    assert P.model_label("./hear-organism-m") == "hear-organism-m"
    assert P.model_label("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"     # hub id
    assert P.model_label("llava-1.5-7b") == "llava-1.5-7b"                             # registry name
    monkeypatch.chdir(tmp_path)                                # "owner/name" shape, but a folder under the root
    assert P.model_label("notebooks/profiles") == "profiles"

    class StudyLike:
        model = str(organism)
        model_id = "hear-organism-s-d1db87f9"

    assert P.model_label(StudyLike()) == "hear-organism-s"


def test_criterion_colours_are_fixed_and_distinct():
    colours = [P.criterion_color(c) for c in EF.CRITERIA]
    assert colours == ["tab:red", "tab:gray", "tab:blue", "tab:green"]
    assert P.criterion_color("something else") not in colours
    groups = P.group_colors(["b", "a", "b", "c"])
    assert list(groups) == ["a", "b", "c"] and len(set(groups.values())) == 3
    assert len(set(P.group_colors([f"g{i}" for i in range(15)]).values())) == 15      # tab20 past 10


def test_mathtext_labels_render():
    fig = P.new_figure()
    ax = fig.subplots()
    for i, label in enumerate((P.THETA, P.THETA_N, P.THETA_IMG, P.DELTA_N, P.DELTA_I, P.PI, P.PI_HAT,
                               P.W_EQ13, P.DEPTH)):
        ax.text(0.1, i / 10, label)
    assert renders(fig)
    assert P.THETA_IMG == r"$\theta^{\mathrm{img}}$" and "θ" not in P.THETA_IMG


def test_head_map_draws_one_image_with_a_colour_bar():
    fig = P.new_figure()
    ax = fig.subplots()
    values = np.arange(12, dtype=float)
    im = P.head_map(ax, values, "title", shape=(3, 4), symmetric=True, label=P.THETA)
    assert isinstance(im, AxesImage) and list(ax.images) == [im]
    assert im.get_array().shape == (3, 4)
    assert im.get_clim() == (-11.0, 11.0)                     # symmetric: ±max |value|
    assert len(colorbars(fig)) == 1 and colorbars(fig)[0].ax.get_ylabel() == P.THETA
    assert ax.get_xlabel() == "head" and ax.get_ylabel() == "layer" and ax.get_title() == "title"
    assert renders(fig)


def test_head_map_without_colour_bar_and_all_zero_symmetric():
    fig = P.new_figure()
    ax = fig.subplots()
    im = P.head_map(ax, np.zeros((2, 2)), colorbar=False, symmetric=True)
    assert colorbars(fig) == [] and im.get_clim() == (-1.0, 1.0)


def test_a_partial_coverage_map_labels_its_rows_with_the_decoder_layers_they_stand_for():
    """Mllama's head map has a row per cross-attention layer (decoder layers 1 and 3 of 4): the rows say so."""
    fig = P.head_map_panels([np.zeros((2, 4)), np.zeros((3, 4))], ["mllama", "llava"], layers=[[1, 3], None])
    mllama, llava = [ax for ax in fig.axes if ax.images]
    assert [t.get_text() for t in mllama.get_yticklabels()] == ["1", "3"] and list(mllama.get_yticks()) == [0, 1]
    assert mllama.get_ylabel() == "decoder layer (covered ones)" and llava.get_ylabel() == "layer"
    assert renders(fig)


def test_head_map_panels_share_one_scale_and_bar():
    maps = [np.full((2, 3), 0.1), np.full((2, 3), 0.5), np.full((4, 4), 0.9)]
    fig = P.head_map_panels(maps, ["a", "b", "c"], cols=2, cmap="Reds", label=P.DELTA_N, suptitle="Fig. 7")
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    assert {ax.images[0].get_clim() for ax in panels} == {(0.1, 0.9)}
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    off = [ax for ax in fig.axes if not ax.axison]
    assert len(off) == 1                                      # 2 × 2 grid, 3 maps
    assert len(colorbars(fig)) == 1
    assert renders(fig)


def test_min_heads_bars_one_bar_per_criterion_with_error_bars():
    kf = np.array([[1, 3, 5, 4], [3, 5, 7, 6]])
    kc = np.array([[6, 14, 12, 15], [8, 16, 14, 17]])
    fig = P.new_figure()
    axes = fig.subplots(1, 2)
    P.min_heads_bars(axes, kf, kc, list(EF.CRITERIA), "hear-organism-s", 16)
    for ax, k in zip(axes, (kf, kc)):
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, k.mean(axis=0))
        assert [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches] == \
            [matplotlib.colors.to_hex(P.criterion_color(c)) for c in EF.CRITERIA]
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert len(bars) == 1 and bars[0].errorbar is not None
        assert any(line.get_ydata()[0] == 16 for line in ax.lines)      # the N line
    assert axes[0].get_title() == "hear-organism-s: faithfulness > 0.8"
    assert axes[1].get_title() == "hear-organism-s: completeness < 0.2"


def test_theta_attention_scatter_colours_by_depth_and_reports_pearson():
    rng = np.random.default_rng(0)
    attention = rng.random((5, 6))
    theta = 2 * attention + 0.01 * rng.standard_normal((5, 6))
    fig = P.new_figure()
    ax = fig.subplots()
    sc, rho = P.theta_attention_scatter(ax, theta, attention, 3, 2, "m", colorbar=True)
    assert rho == pytest.approx(pearson(attention.ravel(), theta.ravel())) and rho > 0.99
    assert sc.get_offsets().shape == (30, 2)
    np.testing.assert_allclose(sc.get_array(), np.tile([0, 0, 0.5, 0.5, 1, 1], 5))
    assert len(colorbars(fig)) == 1 and "$" in ax.get_ylabel()
    assert ax.get_title().startswith("m: $\\rho$ = 1.00")
    assert renders(fig)


def test_embedding_scatter_one_collection_and_legend_entry_per_group():
    xy = np.arange(12, dtype=float).reshape(6, 2)
    groups = np.array(["cat", "dog", "cat", "bird", "dog", "cat"])
    fig = P.new_figure()
    ax = fig.subplots()
    P.embedding_scatter(ax, xy, groups, "category")
    assert len(ax.collections) == 3
    assert [len(c.get_offsets()) for c in ax.collections] == [1, 3, 2]       # bird, cat, dog
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bird", "cat", "dog"]


def test_token_bars_highlight_tokens_above_the_threshold():
    delta = np.array([[0.0, 0.01, 0.3], [0.02, 0.0, 0.5]])
    fig = P.new_figure()
    ax = fig.subplots()
    P.token_bars(ax, delta, ["▁What", "▁cost$", ":"], "t", threshold=0.05)
    assert len(ax.patches) == 3
    np.testing.assert_allclose([p.get_height() for p in ax.patches], delta.mean(axis=0))
    red = matplotlib.colors.to_rgba("tab:red")
    assert [p.get_facecolor() == red for p in ax.patches] == [False, False, True]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["What", "cost\\$", ":"]    # as text, "$" literal
    assert renders(fig)


def test_heldout_scatter_and_grouped_bars():
    fig = P.new_figure()
    a1, a2 = fig.subplots(1, 2)
    P.heldout_scatter(a1, np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.4, 1.0]), "cat")
    assert len(a1.collections) == 1 and len(a1.lines) == 1
    assert a1.lines[0].get_xdata().tolist() == [0.1, 1.0]
    P.grouped_bars(a2, ["real", "sketch"], {"HeAr": [1, 2], "Random": [3, 4], "Causal": [5, 6]},
                   ylabel="minimum heads")
    assert len(a2.patches) == 6
    assert [p.get_height() for p in a2.patches] == [1, 2, 3, 4, 5, 6]
    assert [t.get_text() for t in a2.get_xticklabels()] == ["real", "sketch"]
    assert renders(fig)


def test_image_token_maps_have_a_colour_bar_on_every_map(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
    rng = np.random.default_rng(1)
    entries = [{"theta_img": rng.standard_normal(6), "w": rng.random(6), "grid": [2, 3], "r2": 0.5}
               for _ in range(3)]
    fig = P.image_token_maps([path, np.ones((4, 4, 3)), path], ["cat", "dog", "fish"], entries, 2, "hear-organism-s")
    assert isinstance(fig, Figure)
    bars = colorbars(fig)
    assert len(bars) == 4                                       # 2 rows × (θ^img, w)
    maps = [ax for ax in fig.axes if ax.images and not isinstance(getattr(ax, "_colorbar", None), Colorbar)]
    assert len(maps) == 6                                       # image, θ^img, w per row
    titles = [ax.get_title() for ax in maps]
    assert titles[0] == "cat" and titles[1].startswith(P.THETA_IMG) and titles[2].startswith("$w$")
    assert maps[1].images[0].get_array().shape == (2, 3)
    assert fig.get_suptitle() == "hear-organism-s"
    assert renders(fig)
    empty = P.image_token_maps([], [], [], 4, "none")
    assert isinstance(empty, Figure) and renders(empty)


def test_head_vector_figure_orders_rows_and_columns():
    vectors = np.array([[0.0, 0.2, 0.4], [0.5, 0.1, -0.3]])
    fig = P.head_vector_figure(vectors, [1, 0], [2, 0, 1], ["L0H1", "L1H0"], ["a", "b", "c"])
    ax = next(ax for ax in fig.axes if ax.images and not hasattr(ax, "_colorbar"))
    np.testing.assert_allclose(ax.images[0].get_array(), vectors[[1, 0]][:, [2, 0, 1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["L1H0", "L0H1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "a", "b"]
    assert ax.images[0].get_clim() == (-0.5, 0.5) and len(colorbars(fig)) == 1


def test_table_image_and_message_figures():
    fig = P.table_figure([["cat", 1, "L0H1", "0.300", "cat dog"]], ["answer", "rank", "head", "θ", "top-10"])
    assert len(fig.axes[0].tables) == 1 and renders(fig)
    fig = P.image_panels([np.zeros((4, 4, 3)), np.ones((4, 4, 3))], ["real: cat", "sketch: cat"])
    assert [ax.get_title() for ax in fig.axes] == ["real: cat", "sketch: cat"]
    fig = P.message_figure("no head with θ > 0.1")
    assert fig.axes[0].texts[0].get_text() == "no head with θ > 0.1" and renders(fig)


def test_plain_keeps_data_literal():
    assert P.plain("US$ 5") == r"US\$ 5" and P.plain("cat") == "cat"
    fig = P.new_figure()
    ax = fig.subplots()
    P.embedding_scatter(ax, np.zeros((2, 2)), ["a$b", "c"], "t")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [r"a\$b", "c"]
    P.token_bars(ax, np.zeros((1, 2)), ["▁", "<0x0A>"], "t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["␣", "\\n"]
    assert renders(fig)
