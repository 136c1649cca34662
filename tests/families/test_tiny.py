"""hearlib.families.tiny: the one derived builder makes, for every family, exactly the tiny model the
hand-written builders made before it replaced them.

``data/tiny_fingerprints.json`` was recorded from the hand-written builders of
hearlib/families/tiny.py at commit 6f0e38f (``build_tiny(model_type, dir, seed=0)``; ``internvl+qwen3``:
``tiny_internvl_qwen3``): per written file a hash of its content (JSON files as sorted JSON without
``transformers_version``, the weights tensor by tensor), and the image tokens a 48 × 48 image gives.
Equal hashes mean the same config values, the same weights at seed 0, the same processor, tokenizer
and chat-template files. A deliberate change to a tiny model rewrites the file with
``python -m tests.families.test_tiny`` (from the repository root) and says why in the commit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hearlib.families.registry import FAMILIES
from hearlib.prompts import PAPER_PROMPT

RECORDED = Path(__file__).with_name("data") / "tiny_fingerprints.json"
FINGERPRINTS = json.loads(RECORDED.read_text())
INTERNVL_QWEN3 = "internvl+qwen3"
# the transformers release the weights' hashes were recorded with: a release's initialisation code decides the
# random weights at seed 0, so on another release (.ci/versions) the weights are not compared, every other file is
RECORDED_WITH = "5.24.0"


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "transformers_version"}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def fingerprint(folder: Path) -> dict[str, str]:
    """File name (relative path inside a sub-folder: InstructBLIP's qformer_tokenizer/) -> 16 hex digits of the
    hash of its content (see the module docstring)."""
    from safetensors.torch import load_file

    hashes = {}
    for file in sorted(path for path in Path(folder).rglob("*") if path.is_file()):
        digest = hashlib.sha256()
        if file.suffix == ".json":
            digest.update(json.dumps(_canonical(json.loads(file.read_text())), sort_keys=True).encode())
        elif file.suffix == ".safetensors":
            tensors = load_file(str(file))
            for key in sorted(tensors):
                tensor = tensors[key].contiguous()
                digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
                digest.update(tensor.numpy().tobytes())
        else:
            digest.update(file.read_bytes())
        hashes[file.relative_to(folder).as_posix()] = digest.hexdigest()[:16]
    return hashes


def image_tokens(folder: Path, image) -> int:
    """Image tokens in the paper prompt's chat-template input for ``image``."""
    from transformers import AutoConfig

    from hearlib.method.loading import load_processor

    processor = load_processor(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PAPER_PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=text, return_tensors="pt")
    config = AutoConfig.from_pretrained(folder)
    family = FAMILIES.get(config.model_type)
    if family is not None and family.cross_attention_keys is not None:      # Mllama: the cross-attention keys
        return family.cross_attention_keys(config, inputs)
    return int((inputs.input_ids == config.image_token_id).sum())


def _differing(got: dict, recorded: dict) -> list[str]:
    """The files whose hash differs from the recorded one (the weights only on :data:`RECORDED_WITH`)."""
    import transformers

    names = sorted(set(got) | set(recorded))
    if transformers.__version__ != RECORDED_WITH:
        names = [name for name in names if name != "model.safetensors"]
    return [name for name in names if got.get(name) != recorded.get(name)]


def test_every_family_is_recorded():
    assert set(FINGERPRINTS) == set(FAMILIES) | {INTERNVL_QWEN3}


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_derived_tiny_model_is_the_hand_written_one(model_type, tiny_model_dir, random_images):
    folder = tiny_model_dir(model_type)
    recorded = FINGERPRINTS[model_type]
    assert _differing(fingerprint(folder), recorded["files"]) == []
    assert image_tokens(folder, random_images(1)[0]) == recorded["image_tokens"]
    assert recorded["image_tokens"] == FAMILIES[model_type].tiny.image_tokens


def test_internvl_with_internvl3_5s_decoder_is_the_hand_written_one(tmp_path, random_images):
    from hearlib.families.tiny import build_tiny, internvl_qwen3_spec

    folder = build_tiny("internvl", tmp_path / "internvl-qwen3", spec=internvl_qwen3_spec())
    assert _differing(fingerprint(folder), FINGERPRINTS[INTERNVL_QWEN3]["files"]) == []
    assert image_tokens(folder, random_images(1)[0]) == FINGERPRINTS[INTERNVL_QWEN3]["image_tokens"]


def _record() -> None:
    """Rewrite data/tiny_fingerprints.json from the current builder (a deliberate change only)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from hearlib.families.tiny import build_tiny, internvl_qwen3_spec

    image = Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype("uint8"))
    recorded = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in [*FAMILIES, INTERNVL_QWEN3]:
            spec = internvl_qwen3_spec() if name == INTERNVL_QWEN3 else None
            folder = build_tiny(name.split("+")[0], Path(scratch) / name, spec=spec)
            recorded[name] = {"files": fingerprint(folder), "image_tokens": image_tokens(folder, image)}
    RECORDED.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _record()
