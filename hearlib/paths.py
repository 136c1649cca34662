"""Where everything lives: one place that knows the project's folders.

Every folder can be moved with an environment variable, so a user can point the
study at their own disk (``HEARLIB_DATA``, ``HEARLIB_FIGURES``, ``HEARLIB_BUILD``). The committed
organisms stay in the repository (``HEARLIB_MODELS`` moves them); ``HEARLIB_COCO_TINY`` points the
tests at the real COCO annotations of the shared coco-tiny folder.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


DATA = _env_path("HEARLIB_DATA", ROOT / "data")
FIGURES = _env_path("HEARLIB_FIGURES", ROOT / "figures")
BUILD = _env_path("HEARLIB_BUILD", ROOT / "build")
NOTEBOOKS = ROOT / "notebooks"
PROFILES = NOTEBOOKS / "profiles"   # <name>.yaml: the study's sizes (quick, staged, paper, ci, ...)

MODELS = _env_path("HEARLIB_MODELS", ROOT / "data" / "models")   # committed organisms: data/models/<name>/
SCENES = DATA / "scenes"          # generated COCO / DomainNet-layout data (not committed)
STORE = DATA / "store"            # per-sample ablation records
SHARED_COCO_TINY = _env_path("HEARLIB_COCO_TINY", ROOT.parent / "shared" / "data" / "coco-tiny")


def organism(name: str) -> Path:
    """Folder of a committed model organism, e.g. ``organism("hear-organism-s")``."""
    return MODELS / name


def profile_names() -> list[str]:
    """The profiles shipped in ``notebooks/profiles/``, by name, sorted: what ``--profile`` accepts
    besides a YAML file."""
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def under_root(path: str | Path) -> Path:
    """A relative path taken from the repository root (notebooks run with any working directory)."""
    path = Path(str(path)).expanduser()
    return path if path.is_absolute() else ROOT / path


def from_root(path):
    """``path`` itself where it exists from the working directory, else the same relative path under the
    repository root when it exists there or names one of the project's folders (``data/``, ``figures/``,
    ``build/``); anything else is returned unchanged."""
    text = str(path)
    candidate = Path(text).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and (ROOT / candidate).exists():
        return ROOT / candidate
    if not candidate.is_absolute() and text.startswith(("data/", "./", "figures/", "build/")):
        return ROOT / candidate
    return path
