"""Claims: which process is computing which sample, so independent processes share one store.

A claim is a small file ``<store>/_claims/<name>.claim`` created with ``O_CREAT | O_EXCL`` (one
process wins, on a local disk and on NFS v3+ alike) holding the owner's host, process id and a
token. While the owner works, a heartbeat thread touches its claims every ``heartbeat`` seconds.
A claim is *stale*, and may be taken over, when its owner is a process of this host that no
longer runs, or when its file has not been touched for ``timeout`` seconds (an owner on another
machine that died or hangs). Taking over renames the stale file away first (only one contender's
rename succeeds) and then creates a fresh claim.

This is what lets a SLURM job array, or several machines on a shared file system, run
``hearlib run`` on one store with no coordinator: a claimed sample is not computed twice, and a
killed process leaves its samples to the next one that looks.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

__all__ = ["Claims", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = float(os.environ.get("HEARLIB_CLAIM_TIMEOUT", 120.0))
_HOST = socket.gethostname() or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Claims:
    """The claims this process holds under ``root`` (``<store>/_claims``); use as a context manager
    or call :meth:`close` to release them all and stop the heartbeat."""

    def __init__(self, root: str | Path, *, timeout: float = DEFAULT_TIMEOUT, heartbeat: float | None = None):
        self.root = Path(root)
        self.timeout = float(timeout)
        self.heartbeat = float(heartbeat if heartbeat is not None else max(0.5, self.timeout / 4))
        self.token = uuid.uuid4().hex
        self._held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- paths -----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / f"{name}.claim"

    # -- claiming --------------------------------------------------------------------------
    def acquire(self, name: str) -> bool:
        """Claim ``name``; True if this process now holds it (or already did), False if another
        live process does."""
        if name in self._held:
            return True
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create(path):
                with self._lock:
                    self._held[name] = path
                self._start_heartbeat()
                return True
            if not self._is_stale(path):
                return False
            self._take_away(path)   # False: another process took it over first; try once more
        return False

    def release(self, name: str) -> None:
        with self._lock:
            path = self._held.pop(name, None)
        if path is not None and self.owner(name).get("token") == self.token:
            path.unlink(missing_ok=True)

    def held(self, name: str) -> bool:
        return name in self._held

    def owner(self, name: str) -> dict:
        """The claim file's content (``{}`` when there is none)."""
        try:
            return json.loads(self.path(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def remove_stale(self) -> list[Path]:
        """Remove the claims whose owner is gone (a killed run's, for samples it finished or left);
        each is taken away as :meth:`acquire` takes one over, so a contender never loses a live claim."""
        removed = []
        for path in sorted(self.root.glob("*.claim")) if self.root.is_dir() else []:
            if path.stem in self._held or not self._is_stale(path):
                continue
            if self._take_away(path):         # False: taken over or released meanwhile
                removed.append(path)
        return removed

    @staticmethod
    def _take_away(path: Path) -> bool:
        """Rename a stale claim away and delete it; only one of several contenders' renames succeeds
        (True for that one)."""
        trash = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return False
        trash.unlink(missing_ok=True)
        return True

    def claimed_by_other(self, name: str) -> bool:
        """True while another live process holds ``name``."""
        if name in self._held:
            return False
        path = self.path(name)
        return path.exists() and not self._is_stale(path)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for name in list(self._held):
            self.release(name)

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump({"host": _HOST, "pid": os.getpid(), "token": self.token, "time": time.time()}, stream)
        return True

    def _is_stale(self, path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
            info = json.loads(path.read_text(encoding="utf-8") or "{}")
        except FileNotFoundError:
            return True
        except json.JSONDecodeError:
            return age > self.timeout          # being written right now, or garbage
        if info.get("host") == _HOST and isinstance(info.get("pid"), int) and info.get("token") != self.token:
            if not _pid_alive(info["pid"]):
                return True
        return age > self.timeout

    def _start_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="hearlib-claims", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                paths = list(self._held.values())
            for path in paths:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass
