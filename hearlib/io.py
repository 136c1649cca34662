"""Atomic writes: a reader never sees a half-written file (temporary file, then rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_bytes(path: str | Path, write) -> Path:
    """Atomically write ``path`` with ``write(stream)`` (a binary stream): figures, tables, text."""
    return _atomic(Path(path), write)


def save_text(path: str | Path, text: str) -> Path:
    data = text.encode()
    return _atomic(Path(path), lambda stream: stream.write(data))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    return _atomic(Path(path), lambda stream: np.save(stream, np.asarray(array), allow_pickle=False))


def load_npy(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def save_json(path: str | Path, data) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=jsonable).encode()
    return _atomic(Path(path), lambda stream: stream.write(text))


def jsonable(value):
    """``json.dumps(default=...)``: numpy scalars/arrays, paths and sets as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def image_files(folder: str | Path) -> list[Path]:
    """Every image file below ``folder``, in a stable sorted order."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
