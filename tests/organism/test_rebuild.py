"""`make model` rebuilds the organisms bit for bit from a seed (issue 38): the whole target, scenes
included, run twice at reduced sizes into two folders gives byte-identical files, and another seed
gives other weights (so the comparison can fail)."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from hearlib.organism import model as O

ROOT = Path(__file__).resolve().parents[2]
REDUCED = ("MODEL_TRAIN_SCENES=12", "MODEL_HELDOUT_SCENES=3",
           "MODEL_TRAIN_ARGS=--vision-steps 3 --decoder-steps 3 --threads 2")
# files whose bytes are the organism; the held-out report and training log carry wall times
WEIGHT_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                "processor_config.json", "chat_template.jinja", "generation_config.json")


def _make(target: str, scenes: Path, models: Path, *settings: str) -> None:
    done = subprocess.run(["make", "-s", target, f"SCENES_DIR={scenes}", f"MODELS_DIR={models}", *REDUCED,
                           *settings], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _weights(models: Path, name: str) -> dict[str, str]:
    digests = _digests(models / name)
    return {f: digests[f] for f in WEIGHT_FILES if f in digests}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_model_rebuilds_every_size_bit_for_bit(tmp_path):
    for run in ("a", "b"):
        _make("model", tmp_path / run / "scenes", tmp_path / run / "models")
    assert _digests(tmp_path / "a" / "scenes") == _digests(tmp_path / "b" / "scenes")
    for name in O.SIZES:
        first = _weights(tmp_path / "a" / "models", name)
        assert "model.safetensors" in first
        assert first == _weights(tmp_path / "b" / "models", name), name
    # the default organism's own target from another seed, on the same scenes: other weights
    _make("model-tower", tmp_path / "a" / "scenes", tmp_path / "c" / "models", "MODEL_SEED=1")
    other = _weights(tmp_path / "c" / "models", "hear-organism-s-seed1")
    assert other["model.safetensors"] != _weights(tmp_path / "a" / "models", "hear-organism-s")["model.safetensors"]
