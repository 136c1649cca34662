"""No silent wrong model (issue 30): a checkpoint whose weights do not all load is refused with one
line naming them; with ``allow_partial_load`` every record says so; every record carries the
environment it was computed in; the load-time check compares hearlib's attention with the model's own."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hearlib import paths
from hearlib.cli import main
from hearlib.errors import UnsupportedModel, UserError
from hearlib.method.loading import load_engine
from hearlib.families.tiny import FAMILIES

ORGANISM = paths.organism("hear-organism-s")
TOWER_LAYER = "vision_tower.encoder.layers.0."
DECODER_LAYER = "language_model.model.layers.1."
PROJECTOR = "multi_modal_projector.linear_1.weight"


def broken_copy(root: Path, name: str, change) -> Path:
    """hear-organism-s with its weights changed by ``change(weights) -> weights``."""
    folder = root / name
    shutil.copytree(ORGANISM, folder)
    weights = change(load_file(str(ORGANISM / "model.safetensors")))
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def renamed_tower(weights):
    return {(k.replace(TOWER_LAYER, "vision_tower.encoder.renamed_layer.") if k.startswith(TOWER_LAYER) else k): v
            for k, v in weights.items()}


def missing_decoder_layer(weights):
    return {k: v for k, v in weights.items() if not k.startswith(DECODER_LAYER)}


def mismatched_projector(weights):
    out = dict(weights)
    out[PROJECTOR] = torch.zeros(weights[PROJECTOR].shape[0], weights[PROJECTOR].shape[1] - 1)
    return out


BROKEN = {"renamed tower": (renamed_tower, "vision_tower.encoder.layers.0", 16),
          "missing decoder layer": (missing_decoder_layer, "language_model.layers.1", 9),
          "mismatched projector": (mismatched_projector, "multi_modal_projector.linear_1.weight", 1)}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    return {name: broken_copy(root, name.replace(" ", "-"), change) for name, (change, _, _) in BROKEN.items()}


def test_the_committed_organism_loads_whole_and_passes_the_check():
    engine = load_engine(ORGANISM)
    assert engine.load_report["partial"] is False and engine.load_report["missing"] == []
    assert engine.sanity["ok"] and engine.sanity["max_abs_difference"] <= 1e-4 * engine.sanity["logit_scale"]


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_checkpoint_is_refused_with_one_line_naming_its_keys(broken, name):
    _, key, count = BROKEN[name]
    with pytest.raises(UserError) as refused:
        load_engine(broken[name])
    message = str(refused.value)
    assert "\n" not in message and message.startswith("refusing")
    assert key in message and "transformers" in message and "--allow-partial-load" in message
    engine = load_engine(broken[name], allow_partial_load=True)
    report = engine.load_report
    assert report["partial"] is True
    changed = report["missing"] + report["mismatched"]
    assert len([k for k in changed if key in k]) == count, changed


@pytest.mark.parametrize("name", list(BROKEN))
def test_hearlib_run_exits_2_without_writing_a_record(broken, name, tmp_path, capsys):
    from hearlib.organism import scenes

    data = scenes.generate(tmp_path / "scenes", 4, seed=4242, progress=False)
    store = tmp_path / "store"
    status = main(["run", "--profile", "ci", "--model", str(broken[name]), "--data", str(data), "--out", str(store),
                   "--stages", "lens", "--no-progress"])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("hearlib run: error: refusing")
    written = [p for p in store.rglob("meta.json")] if store.exists() else []
    assert written == []


def test_with_the_flag_every_record_says_the_load_was_partial(broken, tmp_path):
    from hearlib.organism import scenes
    from hearlib.records.pipeline import Pipeline
    from hearlib.records.stages import Settings

    data = scenes.generate(tmp_path / "scenes", 3, seed=4242, progress=False)
    pipeline = Pipeline(broken["renamed tower"], data, store=tmp_path / "store", n_mean_images=2, progress=False,
                        allow_partial_load=True)
    record = pipeline.ensure("screen", pipeline.items()[0], Settings())
    load = record.meta["environment"]["load"]
    assert load["partial"] is True and any("vision_tower.encoder.layers.0" in k for k in load["missing"])


def test_every_record_carries_its_environment(tmp_path):
    import transformers

    from hearlib.organism import scenes
    from hearlib.records.pipeline import Pipeline
    from hearlib.records.stages import Settings

    data = scenes.generate(tmp_path / "scenes", 3, seed=4242, progress=False)
    pipeline = Pipeline(ORGANISM, data, store=tmp_path / "store", n_mean_images=2, progress=False)
    record = pipeline.ensure("knockout", pipeline.items()[0], Settings())
    env = record.meta["environment"]
    assert env["transformers"] == transformers.__version__ and env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["dtype"] == "float32" and env["method"] == "fast"
    assert env["load"]["partial"] is False and env["check"]["ok"] is True
    assert len(env["weights"]) == 16 and env["weights"] == pipeline.engine.weight_fingerprint()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_load_time_check_runs_on_every_family(family, tiny_model_dir):
    engine = load_engine(tiny_model_dir(family))
    check = engine.sanity
    assert check is not None and check["ok"], check
    assert check["max_abs_difference"] <= check["tolerance"] * check["logit_scale"]


def test_the_load_time_check_catches_a_changed_attention(monkeypatch):
    from hearlib.method import attention

    engine = load_engine(ORGANISM, check=False)
    original = attention.RecordPlan.attend

    def wrong(self, module, layer, query, key, value, attn):       # a mask that silently changed
        return original(self, module, layer, query * 1.5, key, value, attn)

    monkeypatch.setattr(attention.RecordPlan, "attend", wrong)
    with pytest.raises(UnsupportedModel, match="differ from the model's own eager attention"):
        engine.check_intact()


def test_hearlib_run_warns_when_a_key_mixes_transformers_versions(tmp_path, capsys):
    import json

    from hearlib.organism import scenes

    data = scenes.generate(tmp_path / "scenes", 4, seed=4242, progress=False)
    store = tmp_path / "store"
    argv = ["run", "--profile", "ci", "--data", str(data), "--out", str(store), "--stages", "explore",
            "--no-progress"]
    assert main(argv) == 0
    assert "were made under transformers" not in capsys.readouterr().err
    metas = sorted(store.rglob("head_attention-*/*/meta.json"))
    assert len(metas) >= 2, "the run wrote several records of one key"
    meta = json.loads(metas[0].read_text())
    meta["environment"]["transformers"] = "4.0.0"
    metas[0].write_text(json.dumps(meta))
    assert main(argv) == 0
    assert "were made under transformers 4.0.0," in capsys.readouterr().err
