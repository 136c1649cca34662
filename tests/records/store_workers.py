"""Writer and reader processes for tests/records/test_store_concurrency.py.

``python store_workers.py write ROOT ORDER`` writes every record of :func:`expected_record` that is
neither written nor claimed by another live writer, as ``hearlib run`` does (a claim per record,
the real atomic :meth:`Store.put`, which also marks the manifest). ``ORDER`` is ``up`` or ``down``,
so two writers meet in the middle.

``python store_workers.py read ROOT STOP`` reads the store in rounds until the file ``STOP``
exists: every listed key is loaded and compared with :func:`expected_record`, the manifest is read,
and the render's unchanged-store check (two :meth:`Store.snapshot` s and
:func:`hearlib.paper.render.changed_files`) is run. It prints one JSON line: rounds, how many
rounds saw the store half-written, keys listed and loaded, and every error with its traceback.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import numpy as np

N_RECORDS = 48
ARRAYS = 6              # arrays per record (each one file, flushed to disk: a write takes a while)
ARRAY_SIZE = 4096


def record_key(index: int) -> str:
    """Keys laid out as the study lays them out: model/dataset/stage-hash/sample."""
    return f"organism/scenes/attribution-{index % 3}/sample-{index:04d}"


def expected_record(index: int) -> tuple[dict, dict]:
    """The arrays and metadata of record ``index``: a function of the index alone."""
    rng = np.random.default_rng(index)
    arrays = {f"a{j}": rng.standard_normal(ARRAY_SIZE) for j in range(ARRAYS)}
    return arrays, {"index": index, "sample": f"sample-{index:04d}"}


def write(root: Path, order: str) -> None:
    from hearlib.records.claims import Claims
    from hearlib.records.store import Store

    store = Store(root)
    indices = range(N_RECORDS) if order == "up" else range(N_RECORDS - 1, -1, -1)
    with Claims(root / "_claims", timeout=60) as claims:
        for index in indices:
            key = record_key(index)
            name = key.replace("/", "__")
            if store.exists(key) or not claims.acquire(name):
                continue
            if not store.exists(key):           # finished by the other writer before our claim
                arrays, meta = expected_record(index)
                store.put(key, arrays, meta)
            claims.release(name)


def _check_record(store, key: str) -> str | None:
    """What is wrong with the record a reader loaded for a listed key (None: nothing)."""
    record = store.get(key)
    if record is None:
        return f"{key}: listed but not loadable"
    index = int(key.rsplit("-", 1)[1])
    arrays, meta = expected_record(index)
    if record.meta != meta or set(record.arrays) != set(arrays):
        return f"{key}: incomplete ({sorted(record.arrays)}, {record.meta})"
    if not all(np.array_equal(record.arrays[name], value) for name, value in arrays.items()):
        return f"{key}: arrays differ"
    return None


def read(root: Path, stop: Path) -> dict:
    from hearlib.paper.render import changed_files
    from hearlib.records.store import Store

    store = Store(root, clean=False)
    report = {"rounds": 0, "partial_rounds": 0, "listed": 0, "loaded": 0, "errors": []}
    while not stop.exists():
        report["rounds"] += 1
        try:
            keys = store.keys()
            report["partial_rounds"] += len(keys) < N_RECORDS
            for key in keys:
                report["listed"] += 1
                problem = _check_record(store, key)
                if problem:
                    report["errors"].append(problem)
                else:
                    report["loaded"] += 1
            manifest = store.manifest()
            unlisted = [key for key, entry in manifest.items() if entry["status"] != "finished"]
            if unlisted:
                report["errors"].append(f"manifest entries that are not finished: {unlisted}")
            before = store.snapshot()
            changed_files(before, store.snapshot(), store.root)
        except Exception:                                           # noqa: BLE001 - counted, not hidden
            report["errors"].append(traceback.format_exc())
    return report


if __name__ == "__main__":
    action, root = sys.argv[1], Path(sys.argv[2])
    if action == "write":
        write(root, sys.argv[3])
    else:
        print(json.dumps(read(root, Path(sys.argv[3]))))
