"""hearlib.records.store: atomic records, no pickle, manifest, leftovers of killed writers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hearlib.records.store import Store, settings_hash, slug


def test_settings_hash_is_stable_and_order_free():
    a = settings_hash({"n_masks": 64, "seed": 0, "prompt": "p", "ratio": 0.75})
    b = settings_hash({"ratio": 0.75, "prompt": "p", "seed": 0, "n_masks": 64})
    assert a == b and len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    assert settings_hash({"n_masks": np.int64(64)}) == settings_hash({"n_masks": 64})
    assert settings_hash({"seed": 1}) != settings_hash({"seed": 0})
    # fixed value: a change of the hashing scheme must be deliberate (it orphans every record)
    assert settings_hash({}) == "44136fa355b3678a"


def test_key_layout_and_slugs(tmp_path):
    store = Store(tmp_path)
    key = store.key("hear-organism-s", "coco-scenes", "domains/real/cat/0001", {"seed": 0})
    model, dataset, digest, sample = key.split("/")
    assert (model, dataset, digest) == ("hear-organism-s", "coco-scenes", settings_hash({"seed": 0}))
    assert "/" not in sample and sample.startswith("domains_real_cat_0001-")
    assert slug("a/b") != slug("a_b")
    assert store.path(key) == tmp_path.joinpath(*key.split("/"))
    for bad in ("", "../x", "/abs", "a//b", "a/.hidden", "a/_manifest"):
        with pytest.raises(ValueError):
            store.path(bad)


def test_roundtrip_replace_and_manifest(tmp_path):
    store = Store(tmp_path)
    key = store.key("m", "d", "1", {"seed": 0})
    assert store.get(key) is None and store.manifest() == {}
    arrays = {"masks": np.eye(3, dtype=bool), "pi": np.linspace(0, 1, 3), "r2": np.float64(0.9),
              "answer_tokens": np.array(["hot", "dog"])}
    store.put(key, arrays, {"r2": np.float64(0.9), "path": Path("/x.png"), "n": np.int64(3)})
    record = store.get(key)
    assert set(record.arrays) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(record.arrays[name], value)
        assert record.arrays[name].dtype == np.asarray(value).dtype
    assert record.meta == {"r2": 0.9, "path": "/x.png", "n": 3}
    assert record["pi"][2] == 1.0 and record["r2"] == 0.9 and "masks" in record
    # replace
    store.put(key, {"pi": np.zeros(2)}, {"v": 2})
    record = store.get(key)
    assert set(record.arrays) == {"pi"} and record.meta == {"v": 2}
    # manifest: finished (automatically), failed, skipped with the reason
    k2, k3 = store.key("m", "d", "2", {"seed": 0}), store.key("m", "d", "3", {"seed": 0})
    store.mark(k2, "failed", "cannot read image 2.png: truncated")
    store.mark(k3, "skipped", "model answers 'cat', not 'dog'", info={"predicted": "cat"})
    manifest = store.manifest()
    assert [manifest[k]["status"] for k in (key, k2, k3)] == ["finished", "failed", "skipped"]
    assert manifest[k2]["reason"].startswith("cannot read") and manifest[k3]["predicted"] == "cat"
    assert store.summary() == {"finished": 1, "failed": 1, "skipped": 1}
    assert store.keys() == [key] and store.keys("m/d/") == [key] and store.keys("x") == []
    with pytest.raises(ValueError):
        store.mark(key, "done", "")
    # a finished mark whose record disappeared is not reported as finished
    store.delete(key)
    assert store.get(key) is None and key not in store.manifest()


def test_no_pickle(tmp_path):
    store = Store(tmp_path)
    key = store.key("m", "d", "obj", {})
    with pytest.raises(TypeError, match="object"):
        store.put(key, {"bad": np.array([{"a": 1}, None], dtype=object)}, {})
    assert store.get(key) is None
    # a record someone tampered with to hold a pickled object array is refused on load
    store.put(key, {"x": np.zeros(2)}, {})
    np.save(store.path(key) / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot be read"):
        store.get(key)


def test_failed_write_leaves_no_record(tmp_path, monkeypatch):
    store = Store(tmp_path)
    key = store.key("m", "d", "1", {})
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        store.put(key, {"a": np.zeros(3), "b": np.ones(3)}, {})
    assert store.get(key) is None and store.manifest() == {}
    assert not list(tmp_path.rglob(".tmp-*"))     # cleaned up in-process


CRASH = textwrap.dedent("""
    import os, sys
    import numpy as np
    from hearlib.records.store import Store
    store = Store(sys.argv[1])
    key = sys.argv[2]
    real_save = np.save
    count = [0]
    def crash(*a, **k):
        count[0] += 1
        if count[0] == 2:
            os._exit(9)          # killed mid-write: no cleanup runs
        return real_save(*a, **k)
    np.save = crash
    store.put(key, {"a": np.zeros(1000), "b": np.ones(1000), "c": np.ones(5)}, {"v": 2})
""")


def test_crash_mid_write_leaves_no_half_record(tmp_path):
    store = Store(tmp_path)
    key = store.key("m", "d", "1", {})
    old = store.put(key, {"a": np.arange(4)}, {"v": 1})
    other = store.key("m", "d", "2", {})
    result = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), other], capture_output=True)
    assert result.returncode == 9, result.stderr.decode()
    leftovers = list(tmp_path.rglob(".tmp-*"))
    assert leftovers, "the killed writer should have left its temporary folder"
    # readers never see the half-written record, and the old record is intact
    assert store.get(other) is None
    assert other not in store.manifest() and store.keys() == [key]
    np.testing.assert_array_equal(store.get(key).arrays["a"], old.arrays["a"])
    # the same crash while *replacing* a record keeps the old one readable
    result = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), key], capture_output=True)
    assert result.returncode == 9
    assert store.get(key).meta == {"v": 1}
    # opening the store again removes what the dead writers left; a rewrite works
    reopened = Store(tmp_path)
    assert not list(tmp_path.rglob(".tmp-*"))
    reopened.put(other, {"a": np.zeros(1)}, {"v": 3})
    assert reopened.get(other).meta == {"v": 3}


def test_clean_keeps_live_writers(tmp_path):
    store = Store(tmp_path)
    live = tmp_path / "m" / f".tmp-{__import__('hearlib.records.store', fromlist=['x'])._HOST}-{os.getpid()}-abcd1234-x"
    live.mkdir(parents=True)
    foreign = tmp_path / ".tmp-otherhost-1-abcd1234-y"
    foreign.mkdir()
    assert store.clean() == []           # our own (live) writer, and a young foreign one
    os.utime(foreign, (0, 0))
    assert store.clean() == [foreign]    # the foreign one once stale
    assert live.exists()


def test_concurrent_writers_one_manifest(tmp_path):
    """Several processes marking and writing at once: every status ends up in the manifest."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from hearlib.records.store import Store
        store = Store(sys.argv[1], clean=False)
        rank = int(sys.argv[2])
        for i in range(rank, 40, 4):
            key = store.key("m", "d", str(i), {})
            if i % 3 == 0:
                store.mark(key, "skipped", f"sample {i} wrong")
            else:
                store.put(key, {"x": np.full(10, i)}, {"i": i})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(r)]) for r in range(4)]
    assert all(p.wait() == 0 for p in procs)
    store = Store(tmp_path)
    manifest = store.manifest()
    assert len(manifest) == 40
    assert store.summary() == {"finished": 26, "failed": 0, "skipped": 14}
    for key in store.keys():
        rec = store.get(key)
        assert (rec.arrays["x"] == rec.meta["i"]).all()
    status_files = list((tmp_path / "_manifest").rglob("*.json"))
    assert len(status_files) == 40 and all(json.loads(p.read_text())["key"] for p in status_files)
