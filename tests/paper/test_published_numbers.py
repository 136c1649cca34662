"""The numbers a render states are recomputed from the store's raw arrays with numpy and
scikit-learn alone (issue 31): Table 2's held-out R² and ρ, Fig. 7's share of samples without an
important head, Fig. 3C's layer; each compared with what RESULTS.md prints."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet
from sklearn.metrics import explained_variance_score

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "notebooks" / "profiles" / "ci.yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The ci profile's notebooks 01 and 02 collected and rendered into a fresh store and folder."""
    root = tmp_path_factory.mktemp("published")
    store, out = root / "store", root / "figures"
    env = {**os.environ, "PY": sys.executable}
    command = ["make", "--no-print-directory", "collect", "render", "PROFILE=ci", f"PY={sys.executable}",
               "COLLECT_STAGES=attribution,validation,lens", "ONLY=01_head_ablation 02_head_attribution",
               f"STORE={store}", f"FIGURES={out}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return store, out, (out / "RESULTS.md").read_text(encoding="utf-8")


def headline(results: str, item: str) -> str:
    """The bold value of ``item``'s row in RESULTS.md."""
    row = next(line for line in results.splitlines() if line.startswith(f"| {item} |"))
    return re.search(r"\*\*(.+?)\*\*", row).group(1)


def held_out_fit(masks: np.ndarray, pi: np.ndarray, seed: int) -> tuple[float, float]:
    """METHOD.md: ElasticNet(α 0.0005, l1 0.5, 1,000 iterations) on a seeded 80% of the masks,
    explained variance and Pearson ρ on the other 20%."""
    order = np.random.default_rng(seed).permutation(len(pi))
    n_train = int(np.floor(0.8 * len(pi) + 0.5))
    train, test = np.sort(order[:n_train]), np.sort(order[n_train:])
    model = ElasticNet(alpha=0.0005, l1_ratio=0.5, max_iter=1000, random_state=seed)
    model.fit(masks[train].astype(float), pi[train])
    predicted = model.predict(masks[test].astype(float))
    return explained_variance_score(pi[test], predicted), float(np.corrcoef(pi[test], predicted)[0, 1])


def test_table2_r2_and_rho_recomputed(rendered):
    store, _, results = rendered
    import yaml

    from hearlib.records.stages import Settings
    from hearlib.paper.study import Study

    params = yaml.safe_load(PROFILE.read_text())
    study = Study(params["model"], "data/scenes/study-60", store=store, n_mean_images=params["n_mean_images"],
                  profile="ci", compute=False)
    items = study.samples(params["n_samples"])[: params["n_size_samples"]]
    settings = Settings.make(n_masks=params["n_masks"], ratio=params["ratio"], seed=params["seed"])
    pipeline = study.pipeline
    fits = []
    for it in items:
        folder = pipeline.store.path(pipeline.key("attribution", settings, it))
        masks, pi = np.load(folder / "masks.npy"), np.load(folder / "pi.npy")
        fits.append(held_out_fit(masks, pi, params["seed"]))
    r2, rho = np.array(fits).T
    stated = headline(results, "Table 2")
    numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", stated)[:4]]
    assert numbers == pytest.approx([r2.mean(), r2.std(), rho.mean(), rho.std()], abs=0.006), stated


def test_fig7_share_and_fig3c_layer_recomputed(rendered):
    store, _, results = rendered
    import yaml

    from hearlib.records.stages import Settings
    from hearlib.paper.study import Study

    params = yaml.safe_load(PROFILE.read_text())
    study = Study(params["model"], "data/scenes/study-60", store=store, n_mean_images=params["n_mean_images"],
                  profile="ci", compute=False)
    items = study.samples(params["n_samples"])
    settings = Settings.make(n_masks=params["n_masks"], ratio=params["ratio"], seed=params["seed"])
    pipeline = study.pipeline
    deltas, x_stars = [], []
    for it in items:
        attribution = pipeline.store.path(pipeline.key("attribution", settings, it))
        validation = pipeline.store.path(pipeline.key("validation", settings, it))
        deltas.append(np.load(validation / "delta.npy"))
        # x*: the fewest heads by θ whose faithfulness passes 0.8 (HeAr is the first criterion row)
        theta, faithfulness = np.load(attribution / "theta.npy"), np.load(validation / "faithfulness.npy")[0]
        passing = np.flatnonzero(faithfulness > params.get("threshold", 0.8))
        k = int(passing[0]) + 1 if passing.size else theta.size
        x_star = np.zeros(theta.size, bool)
        x_star[np.argsort(-theta, kind="stable")[:k]] = True
        assert np.array_equal(x_star, np.load(validation / "x_star.npy"))
        x_stars.append(x_star)
    share = np.mean([not (d > 0.05).any() for d in deltas])
    assert headline(results, "Fig. 7") == f"{share:.0%} of {len(items)} samples"
    n_heads = np.load(pipeline.store.path(pipeline.key("validation", settings, items[0])) / "delta.npy").size
    first = pipeline.store.get(pipeline.key("attribution", settings, items[0]))
    L, H = first.meta["n_layers"], first.meta["n_heads"]
    assert L * H == n_heads
    per_layer = np.mean(x_stars, axis=0).reshape(L, H).mean(axis=1)
    layer = int(np.argmax(per_layer))
    assert headline(results, "Fig. 3C") == f"layer {layer} of {L} (relative depth {layer / max(1, L - 1):.2f})"
