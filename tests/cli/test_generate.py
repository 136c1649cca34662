"""``python -m hearlib generate``: the files it writes, its first-step logits against the engine's
literal ablation on a tiny model of every registered family, head sets from a heads JSON, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_collect import tiny_model_files

from hearlib.cli import main
from hearlib.families.tiny import FAMILIES
from hearlib.method.attention import LiteralPlan, ablation

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tiny_model_dir, random_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"generate-{request.param}")
    return tiny_model_files(request.param, tiny_model_dir, random_images, folder)


@pytest.fixture(scope="module")
def llava(tiny_model_dir, random_images, tmp_path_factory):
    """For what does not depend on the family: head selection and bad input."""
    return tiny_model_files("llava", tiny_model_dir, random_images, tmp_path_factory.mktemp("generate-llava"))


def run(*argv) -> int:
    return main(["generate", *map(str, argv)])


def test_ablate_writes_the_literal_ablations_first_logits(setup, tmp_path):
    engine, model, image, means_path = setup
    heads = [(0, 1), (engine.n_layers - 1, 0), (engine.n_layers - 1, engine.n_heads - 1)]
    spec = ",".join(f"{layer}.{head}" for layer, head in heads)
    assert run("--model", model, "--image", image, "--heads", spec, "--means", means_path,
               "--max-new-tokens", 3, "--out", tmp_path) == 0
    first = np.load(tmp_path / "first_logits.npy")
    generation = json.loads((tmp_path / "generation.json").read_text())
    assert first.dtype == np.float32 and first.ndim == 1
    assert len(generation["tokens"]) <= 3 and generation["settings"]["heads"] == [list(p) for p in heads]
    assert generation["first_token"] == int(first.argmax()) == generation["tokens"][0]
    assert {"text", "environment", "token_strings"} <= set(generation)
    # an encoder-decoder's interventions reach the decoder's positions only, and the settings say so
    assert ("every decoder position" in generation["settings"]["text_queries"]) == engine.family.encoder_decoder

    from hearlib.method.means import MeanKV

    means = MeanKV.load(means_path, engine=engine)
    sample = engine.prepare(image, answer="dog")
    intact = np.ones(engine.n_total_heads, bool)
    intact[[layer * engine.n_heads + head for layer, head in heads]] = False
    with torch.no_grad(), ablation(LiteralPlan(sample.text_start, sample.image_positions, means,
                                               torch.as_tensor(intact[None]), None, None)):
        literal = engine.model(**sample.inputs, use_cache=False).logits[0, -1].double().numpy()
    assert np.abs(first - literal).max() <= TOLERANCE
    expected = engine.logits(sample, means, intact[None], method="literal")[0]
    assert abs((first[sample.answer_id] - first.astype(np.float64).mean()) - expected) <= TOLERANCE


def heads_document(engine, theta, x_star_share, agnostic):
    """A minimal heads JSON (docs/HEADS_FORMAT.md) for the engine's geometry."""
    rows = [{"layer": n // engine.n_heads, "head": n % engine.n_heads, "index": n, "theta_mean": float(theta[n]),
             "x_star_share": float(x_star_share[n])} for n in range(engine.n_total_heads)]
    return {"format": "hearlib-heads", "version": 1, "model": engine.name, "model_id": "tiny",
            "n_layers": engine.n_layers, "n_heads": engine.n_heads, "n_samples": {"attribution": 4, "validation": 4},
            "split": {"sample_agnostic": agnostic, "sample_specific": []}, "heads": rows}


def test_a_heads_json_is_selected_by_x_star_top_k_and_agnostic(llava, tmp_path):
    engine, model, image, means_path = llava
    n = engine.n_total_heads
    theta = np.linspace(0.0, 1.0, n)
    share = np.where(np.arange(n) % 3 == 0, 0.75, 0.25)
    path = tmp_path / "heads.json"
    path.write_text(json.dumps(heads_document(engine, theta, share, [[1, 2]])))
    expected = {"x-star": sorted(divmod(i, engine.n_heads) for i in range(0, n, 3)),
                "x-star:0.2": [divmod(i, engine.n_heads) for i in range(n)],
                "top-k:2": sorted([divmod(n - 1, engine.n_heads), divmod(n - 2, engine.n_heads)]),
                "agnostic": [(1, 2)], None: sorted(divmod(i, engine.n_heads) for i in range(max(0, n - 10), n))}
    for select, heads in expected.items():
        out = tmp_path / str(select).replace(":", "_")
        chosen = ["--select", select] if select else []      # none: top-k:10, as hearlib heads diff
        assert run("--model", model, "--image", image, "--heads", path, *chosen, "--mode", "scale",
                   "--scale", 0.5, "--max-new-tokens", 1, "--out", out) == 0
        assert json.loads((out / "generation.json").read_text())["settings"]["heads"] == [list(h) for h in heads]


def test_bad_input_is_one_line_and_exit_2(llava, tmp_path, capsys):
    engine, model, image, means_path = llava
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something else"}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(heads_document(engine, np.zeros(engine.n_total_heads),
                                               np.zeros(engine.n_total_heads), [])
                                | {"n_layers": engine.n_layers + 1}))
    base = ["--model", model, "--image", image, "--out", tmp_path / "out"]
    cases = {
        "not layer.head": [*base, "--heads", "3", "--means", means_path],
        "outside the model": [*base, "--heads", f"{engine.n_layers}.0", "--means", means_path],
        "needs --means": [*base, "--heads", "0.1"],
        "needs --scale": [*base, "--heads", "0.1", "--mode", "scale"],
        "applies to --mode scale": [*base, "--heads", "0.1", "--means", means_path, "--scale", "2"],
        "image not found": ["--model", model, "--image", tmp_path / "none.png", "--heads", "0.1", "--means",
                            means_path, "--out", tmp_path / "out"],
        "means file not found": [*base, "--heads", "0.1", "--means", tmp_path / "none.safetensors"],
        "not a 'hearlib heads' JSON file": [*base, "--heads", wrong, "--means", means_path],
        "not a 'hearlib heads' JSON": [*base, "--heads", wrong, "--select", "agnostic", "--means", means_path],
        "heads file not found": [*base, "--heads", tmp_path / "none.json", "--select", "agnostic",
                                 "--means", means_path],
        "chooses no head": [*base, "--heads", other, "--select", "agnostic", "--means", means_path],
        "unknown selection": [*base, "--heads", other, "--select", "best", "--means", means_path],
        "--select applies": [*base, "--heads", "0.1", "--select", "agnostic", "--means", means_path],
        "at least 1": [*base, "--heads", "0.1", "--means", means_path, "--max-new-tokens", "0"],
    }
    for message, argv in cases.items():
        assert run(*argv) == 2, message
        err = capsys.readouterr().err      # after the loader's progress bar, if the model was loaded
        last = err.rstrip("\n").split("\n")[-1]
        assert message in last and last.startswith("hearlib generate: error:") and "Traceback" not in err, err
    other.write_text(json.dumps(heads_document(engine, np.ones(engine.n_total_heads), np.zeros(engine.n_total_heads),
                                               [[0, 0]]) | {"n_layers": engine.n_layers + 1}))
    assert run(*base, "--heads", other, "--select", "agnostic", "--means", means_path) == 2
    assert "is for a model of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
