"""Shared fixtures: tiny random-weight models of every family, built offline once per session."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# idle OpenMP threads sleep (before torch is imported), as `python -m hearlib` does (hearlib.cli.main)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
                "test_store_concurrency.py",
                "test_organism_recipe.py", "test_real_configs.py", "test_coverage.py"}
# Tests of ten seconds or more each on two cores (measured with --durations, 2026-12-06): real-size
# configs, a training run, several processes sharing a store, a kernel started
SLOW_TESTS = {"test_qwen2_vl_real_config_at_448_is_16x16", "test_llava_1_5_real_config_is_one_24x24_grid",
              "test_short_training_run_lowers_the_loss", "test_a_run_killed_mid_sample_leaves_its_claim_to_the_next",
              "test_two_independent_runs_on_one_store_compute_each_sample_once",
              "test_in_a_kernel_figures_and_tables_show_inline_and_progress_is_a_widget"}
FAST_FAMILY = "llava"
FAST_ORGANISM = "hear-organism-s"


def _repeated(item, families: set) -> bool:
    """A repetition kept out of the inner loop: the test on another family than LLaVA, on another
    organism than s, or a command-line failure case after the first (each starts a python process)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    for value in callspec.params.values():
        if isinstance(value, str) and value in families and value != FAST_FAMILY:
            return True
        if isinstance(value, str) and value.startswith("hear-organism-") and value != FAST_ORGANISM:
            return True
    return getattr(item, "originalname", None) == "test_bad_input_ends_with_one_line_and_nonzero_exit" and "missing model" not in callspec.id


def _unavailable_families() -> dict[str, str]:
    """model type -> why the installed transformers cannot run it: a type this release does not define, or
    a family that needs a newer one (``Family.requires``); empty on the development release."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from hearlib.families.registry import FAMILIES

    return {model_type: (f"{model_type} is absent from transformers {transformers.__version__}"
                         if model_type not in CONFIG_MAPPING_NAMES else family.release_problem())
            for model_type, family in FAMILIES.items()
            if model_type not in CONFIG_MAPPING_NAMES or family.release_problem()}


def _lineage_families() -> dict[str, list[str]]:
    """Lineage file name -> the model types of the ``Family(...)`` records it writes (as
    tests/families/test_lineages.py reads them)."""
    import ast
    from pathlib import Path

    import hearlib.families

    found = {}
    for path in Path(hearlib.families.__file__).parent.glob("*.py"):
        types = [node.args[1].value for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Family" and len(node.args) > 1
                 and isinstance(node.args[1], ast.Constant)]
        if types:
            found[path.stem] = types
    return found


def _unavailable_in(item, unavailable: dict, lineages: dict) -> str | None:
    """Why ``item`` cannot run under this release: it is parametrized with an unavailable family, or it is
    in the test module of a lineage file (tests/families/test_<lineage>.py) that holds one."""
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec else ()):
        if isinstance(value, str) and value in unavailable:
            return unavailable[value]
    for model_type in lineages.get(item.path.stem.removeprefix("test_"), ()):
        if model_type in unavailable:
            return unavailable[model_type]
    return None


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` (left out by ``make test-fast``): the end-to-end modules, the tests of ten seconds
    or more, and the repetitions of a test (:func:`_repeated`), so the inner loop still runs each test
    function at least once. Under an older transformers (.ci/versions) the tests of a family it cannot
    run are skipped with the reason."""
    from hearlib.families.registry import FAMILIES

    families = set(FAMILIES)
    unavailable = _unavailable_families()
    lineages = _lineage_families() if unavailable else {}
    for item in items:       # nbval's notebook cells have neither a callspec nor an originalname
        name = getattr(item, "originalname", None)
        if item.path.name in SLOW_MODULES or name in SLOW_TESTS or _repeated(item, families):
            item.add_marker(pytest.mark.slow)
        why = _unavailable_in(item, unavailable, lineages) if unavailable else None
        if why:
            item.add_marker(pytest.mark.skip(reason=why))
