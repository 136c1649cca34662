"""The result store: one atomic record per (model, dataset, sample, settings hash) + a manifest.

Layout under ``root``::

    <key>/                     one record: a folder
        <name>.npy             one file per array (``np.save(..., allow_pickle=False)``)
        meta.json              JSON metadata; written last, inside the temporary folder
    _manifest/<key>.json       one small status file per sample: finished / failed / skipped + reason
    .tmp-*                     temporary folders/files of writes in flight (never read)

A key is a relative path such as ``<model>/<dataset>/<settings hash>/<sample>``
(:meth:`Store.key`); any ``/``-separated relative path of safe names works, so other modules
(:mod:`hearlib.paper.study`) can lay out their own keys.

Atomicity. :meth:`Store.put` writes every array and ``meta.json`` into a temporary folder
*next to* the record (same directory, so the same file system), flushes them, then renames
the folder into place with one ``os.replace``. A record that already exists is first renamed
away (also atomic) and deleted afterwards, so a reader sees the old record, no record, or the
new record, never a half-written or half-deleted one. A process killed mid-write leaves a
``.tmp-*`` folder that :meth:`Store.get` and :meth:`Store.manifest` never look at and that
:meth:`Store.clean` (run when a store is opened) removes once its writer is gone.

Several processes may write to one store at once (``accelerate launch``): records of different
samples live in different folders, and the manifest is one file per sample (written
atomically the same way), aggregated when read, so no two processes ever rewrite one file.

Loading uses ``np.load(path, allow_pickle=False)``: object arrays are refused both when
writing and when reading.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from hearlib.io import HOST as _HOST
from hearlib.io import TMP_PREFIX, fsync_path, jsonable, save_bytes, tmp_name, write_file

__all__ = ["Record", "Store", "settings_hash", "slug", "STATUSES", "CLAIMS_FOLDER"]

STATUSES = ("finished", "failed", "skipped")
MANIFEST = "_manifest"
CLAIMS_FOLDER = "_claims"          # hearlib.records.claims: which process computes which sample
META = "meta.json"
# A temporary entry whose writer cannot be identified is removed once it is this old (seconds).
STALE_AFTER = 6 * 3600

_NAME = re.compile(r"^[A-Za-z0-9-][A-Za-z0-9._+=@,-]*$")


# ----------------------------------------------------------------------------- helpers

def _dumps(data, **kwargs) -> str:
    return json.dumps(data, default=jsonable, allow_nan=True, **kwargs)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """Stable hash of a settings dict: SHA-256 of its sorted, compact JSON (first 16 hex digits).

    Key order never matters; numpy scalars and paths are turned into plain JSON first."""
    text = _dumps(dict(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def slug(text) -> str:
    """A file-name-safe form of ``text`` (keeps letters, digits, ``._-``; long names get a hash)."""
    raw = str(text)
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-")
    if not clean or len(clean) > 80 or clean != raw:
        # distinct raw ids never collide after cleaning ("a/b" and "a_b" differ by the hash)
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]
        clean = f"{clean[:60] or 'x'}-{digest}"
    return clean


def _check_key(key: str) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
    parts = tuple(key.split("/"))
    for part in parts:
        if not _NAME.match(part) or part.startswith(TMP_PREFIX):
            raise ValueError(f"bad store key {key!r}: each '/'-separated part must be a plain name "
                             "(letters, digits, ._+=@,- ; not starting with '.' or '_')")
    return parts


def _check_array_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name == "meta":
        raise ValueError(f"bad array name {name!r} (plain names only, not 'meta')")


def _writer_alive(name: str) -> bool | None:
    """For a temporary entry's name: True/False if its writer process is (not) running on this
    host, None if it cannot tell (another host, unparsable name)."""
    parts = name[len(TMP_PREFIX):].split("-", 3)
    if len(parts) < 3:
        return None
    host, pid = parts[0], parts[1]
    if host != _HOST or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


def _walk(top: Path, skip=lambda name: False) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` for every folder under ``top`` a reader may look at.

    A writer's temporary folders (and folders ``skip`` names) are pruned before they are listed,
    and a folder renamed away by a writer between being listed and being entered is skipped
    (``os.walk`` passes over listing errors), so a walk never fails on a store being written."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX) and not skip(d)]
        yield Path(folder), [f for f in files if not f.startswith(TMP_PREFIX)]


def _read_folder(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A record folder's meta and arrays, all read from the one folder opened first: a writer
    that replaces the record meanwhile makes this fail (FileNotFoundError), never mix two records."""
    folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        def open_file(name: str):
            return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=folder_fd), "rb")

        with open_file(META) as stream:
            meta = json.loads(stream.read().decode("utf-8"))
        names = meta.get("_arrays")
        if names is None:   # a record written by another tool: every .npy in the folder
            names = sorted(n[:-4] for n in os.listdir(folder_fd) if n.endswith(".npy") and not n.startswith("."))
        arrays = {}
        for name in names:
            with open_file(f"{name}.npy") as stream:
                arrays[name] = np.load(stream, allow_pickle=False)
    finally:
        os.close(folder_fd)
    return meta, arrays


def write_json_atomic(path: Path, data) -> Path:
    """Write JSON to ``path`` atomically (:func:`hearlib.io.save_bytes`)."""
    text = _dumps(data, indent=1, sort_keys=True).encode("utf-8")
    return save_bytes(path, lambda stream: stream.write(text))


# ----------------------------------------------------------------------------- records

@dataclass
class Record:
    """One stored record: ``arrays`` (numpy, loaded without pickle) and ``meta`` (JSON)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    key: str = ""
    path: Path | None = None

    def __getitem__(self, name):
        if name in self.arrays:
            return self.arrays[name]
        return self.meta[name]

    def __contains__(self, name) -> bool:
        return name in self.arrays or name in self.meta

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default


@dataclass
class ManifestEntry:
    key: str
    status: str
    reason: str = ""
    time: float = 0.0
    info: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"key": self.key, "status": self.status, "reason": self.reason, "time": self.time, **self.info}


# ----------------------------------------------------------------------------- the store

class Store:
    """Folder-per-record result store (see the module docstring).

    ``Store(root)`` creates ``root`` if needed and, with ``clean=True``, removes temporary
    entries left by writers that are gone (killed runs)."""

    def __init__(self, root: str | Path, *, clean: bool = True):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        if clean:
            self.clean()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- keys ----------------------------------------------------------------------------
    @staticmethod
    def settings_hash(settings: Mapping[str, Any]) -> str:
        return settings_hash(settings)

    def key(self, model_id: str, dataset: str, sample_id, settings: Mapping[str, Any]) -> str:
        """``<model>/<dataset>/<settings hash>/<sample>``, each part made file-name safe."""
        return "/".join((slug(model_id), slug(dataset), settings_hash(settings), slug(sample_id)))

    def path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key))

    def _status_path(self, key: str) -> Path:
        parts = _check_key(key)
        return self.root.joinpath(MANIFEST, *parts[:-1], parts[-1] + ".json")

    # -- records -------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return (self.path(key) / META).is_file()

    def get(self, key: str) -> Record | None:
        """The record under ``key``, or ``None`` if there is none (or it cannot be read)."""
        folder = self.path(key)
        if not (folder / META).is_file():
            return None
        try:
            meta, arrays = _read_folder(folder)
        except FileNotFoundError:
            return None     # replaced or removed by a concurrent writer while we read: as if absent
        except (ValueError, OSError, json.JSONDecodeError) as error:
            raise ValueError(f"store record {folder} cannot be read: {error}") from None
        meta.pop("_arrays", None)
        return Record(arrays, meta, key, folder)

    def put(self, key: str, arrays: Mapping[str, Any], meta: Mapping[str, Any] | None = None, *,
            mark: bool = True, info: Mapping[str, Any] | None = None) -> Record:
        """Write a record atomically (replacing any record under ``key``) and, unless ``mark`` is
        False, mark it finished (with ``info`` in its manifest entry).

        The manifest entry is written just before the record is renamed into place, so a writer
        killed in between leaves a finished entry without a record, which :meth:`manifest` drops,
        never a record that the manifest does not know."""
        folder = self.path(key)
        meta = dict(meta or {})
        clean_arrays: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            _check_array_name(name)
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"array {name!r} has dtype object; the store keeps plain arrays only")
            clean_arrays[name] = array
        meta["_arrays"] = sorted(clean_arrays)
        meta_text = _dumps(meta, indent=1, sort_keys=True)     # fail before touching the disk
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / tmp_name(folder.name)
        trash = None
        try:
            tmp.mkdir()
            for name, array in clean_arrays.items():
                write_file(tmp / f"{name}.npy", lambda stream: np.save(stream, array, allow_pickle=False))
            write_file(tmp / META, lambda stream: stream.write(meta_text.encode("utf-8")))
            if mark:
                self.mark(key, "finished", "", info)
            if folder.exists():
                trash = folder.parent / tmp_name(folder.name + "-old")
                os.replace(folder, trash)
            os.replace(tmp, folder)
            fsync_path(folder.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None and trash.exists():
                shutil.rmtree(trash, ignore_errors=True)
        meta.pop("_arrays")
        return Record(clean_arrays, json.loads(_dumps(meta)), key, folder)

    def delete(self, key: str) -> None:
        """Remove a record and its manifest entry (atomically for readers)."""
        folder = self.path(key)
        if folder.exists():
            trash = folder.parent / tmp_name(folder.name + "-old")
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        status = self._status_path(key)
        if status.exists():
            status.unlink()

    def keys(self, prefix: str = "") -> list[str]:
        """Keys of every complete record (optionally those starting with ``prefix``), sorted.

        A record is complete once its folder, ``meta.json`` included, has been renamed into
        place; writes in flight and the store's own folders (``_manifest``, ``_claims``) are
        never entered."""
        out = []
        for folder, files in _walk(self.root, skip=lambda name: name.startswith((".", "_"))):
            if META in files and folder != self.root:
                key = folder.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    # -- manifest ------------------------------------------------------------------------
    def mark(self, key: str, status: str, reason: str = "", info: Mapping[str, Any] | None = None) -> None:
        """Record a sample's status (``finished``, ``failed`` or ``skipped``) and why."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        entry = {"key": key, "status": status, "reason": str(reason or ""), "time": time.time(),
                 "pid": os.getpid(), "host": _HOST}
        if info:
            entry.update({k: v for k, v in dict(info).items() if k not in entry})
        write_json_atomic(self._status_path(key), entry)

    def status(self, key: str) -> dict | None:
        """The manifest entry of ``key`` (a dict with ``status`` and ``reason``) or ``None``."""
        path = self._status_path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _status_files(self) -> Iterator[Path]:
        for folder, files in _walk(self.root / MANIFEST):
            yield from (folder / name for name in files if name.endswith(".json"))

    def manifest(self, prefix: str = "") -> dict[str, dict]:
        """Every sample's status, aggregated from the per-sample status files: ``{key: entry}``.

        An entry saying ``finished`` whose record is gone is reported as missing (dropped)."""
        out = {}
        for path in self._status_files():
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            key = entry.get("key")
            if not isinstance(key, str) or not key.startswith(prefix):
                continue
            if entry.get("status") == "finished" and not self.exists(key):
                continue
            out[key] = entry
        return dict(sorted(out.items()))

    def summary(self, prefix: str = "") -> dict[str, int]:
        """Counts per status: ``{"finished": n, "failed": n, "skipped": n}``."""
        counts = {s: 0 for s in STATUSES}
        for entry in self.manifest(prefix).values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return counts

    def snapshot(self) -> dict[str, int]:
        """``{path relative to the store: mtime in ns}`` of every complete file in the store
        (writes in flight left out; a file that vanishes while listed is left out too)."""
        out = {}
        for folder, files in _walk(self.root):
            for name in files:
                path = folder / name
                try:
                    out[path.relative_to(self.root).as_posix()] = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
        return out

    # -- housekeeping --------------------------------------------------------------------
    def clean(self, stale_after: float = STALE_AFTER) -> list[Path]:
        """Remove temporary entries (``.tmp-*``) and claims (``_claims/``) whose writer is gone;
        returns what was removed.

        A writer on this host is gone when its process id no longer runs; an entry from another
        host (or an unparsable one) is removed once older than ``stale_after`` seconds (a claim:
        once its heartbeat has stopped for the claims' timeout)."""
        from hearlib.records.claims import Claims

        removed = Claims(self.root / CLAIMS_FOLDER).remove_stale()
        now = time.time()
        for path in self._temporaries():
            alive = _writer_alive(path.name)
            try:
                age = now - path.lstat().st_mtime
            except FileNotFoundError:
                continue
            if alive is True or (alive is None and age < stale_after):
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
        return removed

    def _temporaries(self) -> list[Path]:
        """Every temporary entry outside other temporary folders (those go with their parent)."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            found += [Path(folder) / name for name in (*dirs, *files) if name.startswith(TMP_PREFIX)]
            dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        return found
