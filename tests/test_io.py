"""hearlib.io: atomic writes whose files and folders honour the umask, like any other file."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from hearlib import io


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for the test and restores it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_everything(root):
    """Every kind of file hearlib writes, under new folders; returns (files, folders)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from hearlib.method.means import MeanKV
    from hearlib.paper.report import Report, write_readme
    from hearlib.records.store import Store

    files = [io.save_text(root / "a" / "b" / "t.txt", "x"), io.save_json(root / "j.json", {"a": 1}),
             io.save_npy(root / "n.npy", np.zeros(3)), io.save_bytes(root / "b.bin", lambda s: s.write(b"1"))]
    files.append(MeanKV(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), {"format": "1"}).save(root / "m" / "x.st"))
    store = Store(root / "store")
    key = store.key("model", "data", "s1", {"n": 1})
    record = store.put(key, {"theta": np.ones(4)}, {"r2": 0.5})
    files += [record.path / "theta.npy", record.path / "meta.json",
              next((root / "store" / "_manifest").rglob("*.json"))]
    report = Report("nb", root / "figures", {"p": 1})
    fig, ax = plt.subplots()
    report.figure(fig, "f", "Fig. 1")
    report.table(pd.DataFrame({"a": [1]}), "t", "Table 1")
    files += [root / "figures" / n for n in ("f.png", "f.pdf", "t.csv", "t.md")]
    files += [write_readme(root / "figures"), root / "figures" / ".report" / "nb.json"]
    folders = [root / "a", root / "a" / "b", root / "m", record.path, record.path.parent,
               root / "figures", root / "figures" / ".report"]
    return files, folders


@pytest.mark.parametrize("mask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                          (0o002, 0o664, 0o775)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, file_mode, folder_mode):
    umask(mask)
    files, folders = _write_everything(tmp_path)
    assert {str(f.relative_to(tmp_path)): oct(_mode(f)) for f in files} == \
        {str(f.relative_to(tmp_path)): oct(file_mode) for f in files}
    assert {str(d.relative_to(tmp_path)): oct(_mode(d)) for d in folders} == \
        {str(d.relative_to(tmp_path)): oct(folder_mode) for d in folders}
    assert not list(tmp_path.rglob(io.TMP_PREFIX + "*"))


def test_replacing_a_file_gives_it_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "x.txt"
    path.write_text("old")
    path.chmod(0o600)
    io.save_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o644


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = io.save_text(tmp_path / "x.txt", "old")

    def fail(stream):
        stream.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.save_bytes(path, fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]


def test_save_text_if_changed_keeps_an_unchanged_file(tmp_path):
    path = tmp_path / "README.md"
    assert io.save_text_if_changed(path, "a\n") is True
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert io.save_text_if_changed(path, "a\n") is False
    assert path.stat().st_mtime == 1_000_000_000
    assert io.save_text_if_changed(path, "b\n") is True
    assert path.read_text() == "b\n" and path.stat().st_mtime != 1_000_000_000
