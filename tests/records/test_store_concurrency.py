"""A store read while it is written: readers never fail on a writer's temporary folders, list a
record only once it is complete, and the writers' store equals a single writer's.

Writers and readers are separate processes (tests/records/store_workers.py), as a notebook, the
explorer or ``hearlib heads`` reading a store that ``hearlib run`` fills.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hearlib.records.store import Store

pytest_plugins = ["fixtures_collect"]

WORKERS = Path(__file__).with_name("store_workers.py")
sys.path.insert(0, str(WORKERS.parent))
from store_workers import N_RECORDS, expected_record, record_key  # noqa: E402


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, (
        str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH"))))}


def _worker(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKERS), *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(root: Path, count: int, writers, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and any(w.poll() is None for w in writers):
        if root.is_dir() and len(Store(root, clean=False).keys()) >= count:
            return
        time.sleep(0.05)


def _records(root: Path) -> dict:
    store = Store(root, clean=False)
    return {key: store.get(key) for key in store.keys()}


def test_readers_never_fail_while_two_writers_write_and_one_is_killed(tmp_path):
    store_root, stop = tmp_path / "store", tmp_path / "stop"
    readers = [_worker("read", store_root, stop) for _ in range(2)]
    up, down = _worker("write", store_root, "up"), _worker("write", store_root, "down")
    _wait_for_records(store_root, N_RECORDS // 4, [up, down])
    down.send_signal(signal.SIGKILL)                     # killed midway, as a preempted job
    down.wait(timeout=60)
    resumed = _worker("write", store_root, "down")       # rerun = resume
    for writer in (up, resumed):
        assert writer.wait(timeout=600) == 0, writer.stderr.read()[-3000:]
    stop.touch()
    reports = []
    for reader in readers:
        output, errors = reader.communicate(timeout=600)
        assert reader.returncode == 0, errors[-3000:]
        reports.append(json.loads(output.strip().splitlines()[-1]))

    for report in reports:
        assert report["errors"] == [], report["errors"][:3]
        assert report["loaded"] == report["listed"] > 0
        # the readers did read the store half-written (else this test could not fail)
        assert report["partial_rounds"] >= 3, report

    # the final store: a single writer's, every record bit for bit, every sample finished, no leftovers
    single = tmp_path / "single"
    subprocess.run([sys.executable, str(WORKERS), "write", single, "up"], env=_env(), check=True, timeout=600)
    written, reference = _records(store_root), _records(single)
    assert set(written) == set(reference) == {record_key(i) for i in range(N_RECORDS)}
    for key, record in written.items():
        assert record.meta == reference[key].meta
        for name, array in reference[key].arrays.items():
            np.testing.assert_array_equal(record.arrays[name], array, strict=True)
    store = Store(store_root)                            # opening cleans the killed writer's leftovers
    assert {e["status"] for e in store.manifest().values()} == {"finished"} and len(store.manifest()) == N_RECORDS
    assert not list(store_root.rglob(".tmp-*")) and not list(store_root.rglob("*.claim"))


def test_a_listed_record_is_complete_and_a_vanished_one_reads_as_absent(tmp_path, monkeypatch):
    """The rules the readers rely on, one at a time: a write in flight is never entered or listed;
    a record replaced while read is either the old or the new one, never a mix."""
    store = Store(tmp_path)
    key = record_key(0)
    arrays, meta = expected_record(0)
    in_flight = store.path(key).parent / ".tmp-elsewhere-1-abcd-sample-0000"
    in_flight.mkdir(parents=True)
    (in_flight / "meta.json").write_text("{}")
    assert store.keys() == [] and store.manifest() == {} and store.snapshot() == {}
    store.put(key, arrays, meta)
    assert store.keys() == [key]
    assert set(store.snapshot()) == {f"{key}/{name}.npy" for name in arrays} | {f"{key}/meta.json",
                                                                               f"_manifest/{key}.json"}
    # replace the record between opening its folder and reading its arrays: the reader sees the old
    # folder's files or nothing, never the new meta with the old arrays
    original = np.load
    replaced = []

    def load_then_replace(*args, **kwargs):
        if not replaced:
            replaced.append(True)
            store.put(key, {name: value + 1 for name, value in arrays.items()}, {**meta, "version": 2})
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "load", load_then_replace)
    record = store.get(key)
    monkeypatch.undo()
    assert record is None or (record.meta == meta and all(
        np.array_equal(record.arrays[name], value) for name, value in arrays.items()))
    assert store.get(key).meta == {**meta, "version": 2}


@pytest.mark.skipif(sys.platform != "linux", reason="process groups and SIGKILL as on Linux")
def test_hearlib_heads_reads_a_store_that_hearlib_run_is_filling(tiny_llava, tiny_engine, tmp_path):
    from fixtures_collect import make_coco, subprocess_env

    data = tmp_path / "coco"
    make_coco(data, tiny_engine, n_correct=6, seed=5)
    store_root = tmp_path / "store"
    env = subprocess_env()
    run_args = [sys.executable, "-m", "hearlib", "run", "--stages", "attribution", "--model", str(tiny_llava),
                "--data", str(data), "--out", str(store_root), "--n-samples", "6", "--n-masks", "40",
                "--n-mean-images", "3", "--batch-size", "64", "--no-progress"]
    collect = subprocess.Popen([*run_args, "--delay", "1.0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    heads_args = [sys.executable, "-m", "hearlib", "heads", "--store", str(store_root), "--model", str(tiny_llava),
                  "--select", "top-k:2"]
    results = []
    try:
        while collect.poll() is None:
            out = tmp_path / f"heads-{len(results)}.json"
            heads = subprocess.run([*heads_args, "--out", str(out)], env=env, capture_output=True, text=True,
                                   timeout=300)
            results.append((heads.returncode, heads.stderr, out, collect.poll() is None))
    finally:
        if collect.poll() is None:
            collect.kill()
    assert collect.wait(timeout=60) == 0, collect.stdout.read()[-3000:]
    for returncode, stderr, _, _ in results:
        assert "Traceback" not in stderr, stderr[-3000:]
        # before the store or its first record exists heads says so in one line; afterwards it succeeds
        assert returncode == 0 or any(m in stderr for m in ("store not found", "no attribution or validation records")), \
            stderr[-3000:]
    during = [json.loads(out.read_text()) for code, _, out, running in results if code == 0 and running]
    assert during, "hearlib heads never read the store while hearlib run was writing it"
    assert all(0 < doc["n_samples"]["attribution"] <= 6 for doc in during)
    final = subprocess.run([*heads_args, "--out", str(tmp_path / "final.json")], env=env, capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert json.loads((tmp_path / "final.json").read_text())["n_samples"]["attribution"] == 6
