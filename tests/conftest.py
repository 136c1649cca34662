"""Shared fixtures: tiny random-weight models of every family, built offline once per session."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(family)`` -> folder of a tiny random-weight model + processor."""
    from hearlib.testing import build_tiny

    built: dict[str, object] = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def random_images():
    """``random_images(n, size=(48, 48), seed=0)`` -> list of random RGB PIL images."""
    from PIL import Image

    def make(n: int, size=(48, 48), seed: int = 0):
        rng = np.random.default_rng(seed)
        return [Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")) for _ in range(n)]

    return make
