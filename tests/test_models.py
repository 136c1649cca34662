"""The model registry and loader: the paper's checkpoints, clear errors for everything else."""
from __future__ import annotations

import json

import pytest

from hearlib.errors import UnsupportedModel, UserError
from hearlib.models import CHECKPOINTS, FAMILIES, load_engine, resolve


def test_registry_holds_the_papers_ten_checkpoints():
    assert len(CHECKPOINTS) == 10
    families = sorted({c.family for c in CHECKPOINTS.values()})
    assert families == ["InternVL2.5", "LLaVA-1.5", "LLaVA-NeXT", "Qwen2-VL"]
    assert resolve("llava-1.5-7b") == ("llava-hf/llava-1.5-7b-hf", CHECKPOINTS["llava-1.5-7b"])
    # Families whose token count depends on the input size run at one fixed resolution.
    for checkpoint in CHECKPOINTS.values():
        assert (checkpoint.resolution is not None) == (checkpoint.model_type != "llava")


def test_unknown_architecture_is_a_clear_error_naming_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(UnsupportedModel) as error:
        load_engine(tmp_path)
    message = str(error.value)
    assert "'bert'" in message
    for family, _ in FAMILIES.values():
        assert family in message


def test_remote_code_is_never_enabled_silently(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "my_custom_vlm",
                                                      "auto_map": {"AutoConfig": "cfg.MyConfig"}}))
    with pytest.raises(UserError, match="never enables trust_remote_code"):
        load_engine(tmp_path)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        load_engine(tmp_path / "nowhere")


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_loads_a_local_folder_into_an_engine(family, tiny_model_dir):
    engine = load_engine(tiny_model_dir(family))
    assert engine.n_total_heads == engine.n_layers * engine.n_heads
    assert engine.model.config.text_config._attn_implementation == "hear"
    assert engine.model.config.vision_config._attn_implementation != "hear"
