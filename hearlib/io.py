"""Atomic writes: a reader never sees a half-written file (temporary file, then rename).

Every file hearlib writes goes through :func:`atomic_path`. The temporary file is created
like ``open(path, "w")`` would create it (mode ``0666`` less the umask), so outputs are as
readable as any other file the user makes; folders are made with ``mkdir`` (``0777`` less the
umask). Temporary names start with ``.tmp-<host>-<pid>-`` so :class:`hearlib.records.store.Store`
can tell a live writer's leftovers from a dead one's.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TMP_PREFIX = ".tmp-"
HOST = socket.gethostname().replace("-", "_")[:40] or "host"


def tmp_name(stem: str) -> str:
    """A unique temporary name for ``stem``: ``.tmp-<host>-<pid>-<random>-<stem>``."""
    return f"{TMP_PREFIX}{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{stem}"


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (best effort for folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: Path, write) -> Path:
    """Create ``path`` (it must not exist), fill it with ``write(stream)`` and flush it to disk."""
    with open(path, "xb") as stream:
        write(stream)
        stream.flush()
        os.fsync(stream.fileno())
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary file next to ``path``; when the block ends without error, flush
    it and rename it onto ``path``. On error it is removed and ``path`` is left untouched. The
    file keeps the mode it was created with, even if the writer replaced it (safetensors does).

    For writers that want a file name (``safetensors.save_file``); others use :func:`save_bytes`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / tmp_name(path.name)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))   # the umask applies
    mode = stat.S_IMODE(os.stat(tmp).st_mode)
    try:
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:   # a writer that made its own 0600 file
            os.chmod(tmp, mode)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def save_bytes(path: str | Path, write) -> Path:
    """Atomically write ``path`` with ``write(stream)`` (a binary stream): figures, tables, text."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            write(stream)
    return Path(path)


def save_text(path: str | Path, text: str) -> Path:
    data = text.encode()
    return save_bytes(path, lambda stream: stream.write(data))


def save_text_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds exactly it; True if it wrote.

    An unchanged file keeps its modification time (no rebuilds, no spurious git changes)."""
    path, data = Path(path), text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    save_bytes(path, lambda stream: stream.write(data))
    return True


def save_npy(path: str | Path, array) -> Path:
    return save_bytes(path, lambda stream: np.save(stream, np.asarray(array), allow_pickle=False))


def load_npy(path: str | Path):
    return np.load(path, allow_pickle=False)


def save_json(path: str | Path, data) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=jsonable).encode()
    return save_bytes(path, lambda stream: stream.write(text))


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
