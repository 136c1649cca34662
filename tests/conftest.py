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
    from hearlib.families.tiny import build_tiny

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


def pytest_addoption(parser):
    group = parser.getgroup("browser", "JupyterLab in headless Chromium (tests/browser, make test-browser)")
    group.addoption("--browser", action="store_true", help="collect tests/browser (skipped otherwise)")
    group.addoption("--browser-profile", default=None,
                    help="run copies of the notebooks with this profile's parameters (e.g. ci) instead of their defaults")
    group.addoption("--browser-param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a parameter injected into those copies (VALUE is YAML)")
    group.addoption("--browser-timeout", default="900", help="seconds per notebook (default 900)")


def pytest_ignore_collect(collection_path, config):
    """tests/browser runs only when asked (``--browser``; make test-browser)."""
    if collection_path.name == "browser" and collection_path.parent.name == "tests":
        return None if config.getoption("--browser") else True
    return None


# End-to-end modules: they collect, render or train, and take minutes; `make test-fast` leaves them out.
SLOW_MODULES = {"test_notebooks.py", "test_figures.py", "test_published_numbers.py", "test_sharding.py",
                "test_organism_recipe.py", "test_real_configs.py", "test_coverage.py"}
FAST_FAMILY = "llava"


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` (left out by ``make test-fast``): the end-to-end modules, and every repetition of a
    per-family test but the LLaVA one, so the inner loop still runs each test function once."""
    from hearlib.families.registry import FAMILIES

    families = set(FAMILIES)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        other_family = any(isinstance(v, str) and v in families and v != FAST_FAMILY for v in params.values())
        if item.path.name in SLOW_MODULES or other_family:
            item.add_marker(pytest.mark.slow)
