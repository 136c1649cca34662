"""``hearlib run --stages all`` as two CPU processes under accelerate, killed part-way and
restarted, writes the records of a single-process run, bit for bit, for every stage, and recomputes nothing that
had finished.

accelerate 1.15 starts several CPU processes through torchrun with ``--multi_gpu`` (``--cpu``
with ``--num_processes`` > 1 needs mpirun); on this GPU-less machine hearlib.paper.collect asks
``PartialState`` for CPU processes, so the two workers form a gloo group on CPU. Every option
is given on the command line: no accelerate config file is read or needed.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["fixtures_collect"]

N_SAMPLES = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accelerate() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def _run_args(model, data, domains, out, *extra) -> list[str]:
    return ["run", "--stages", "all", "--model", str(model), "--data", str(data), "--domain-data", str(domains),
            "--domains", "real", "sketch", "--out", str(out), "--n-samples", str(N_SAMPLES), "--n-masks", "40",
            "--n-mean-images", "3", "--batch-size", "64", "--no-progress", *extra]


def _launch(*args) -> list[str]:
    return [*_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
            "-m", "hearlib", *_run_args(*args)]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process below it, by pid (torchrun starts its workers in
    sessions of their own, so killing the launcher's process group would orphan them)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in reversed(tree):
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(tree, timeout=30)


def _records(store_root: Path) -> dict:
    from hearlib.records.store import Store

    store = Store(store_root, clean=False)
    return {key: store.get(key) for key in store.keys()}


def _same(a, b) -> bool:
    """Equal metadata, floats bit for bit (NaN equal to NaN); the ``run`` entry (where and when it
    was computed) is left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - {"run"}
        return keys == set(b) - {"run"} and all(_same(a[k], b[k]) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _domainnet(root: Path, coco: Path) -> Path:
    """A DomainNet-layout folder <domain>/<class>/<image> from the COCO images."""
    import shutil

    images = sorted((coco / "images").iterdir())
    for i, image in enumerate(images):
        folder = root / ("real", "sketch")[i % 2] / ("cat", "dog")[(i // 2) % 2]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    return root


def test_all_stages_two_processes_killed_and_resumed_equal_one_process(tiny_llava, tiny_engine, tmp_path):
    from fixtures_collect import make_coco, subprocess_env

    from hearlib.records.store import Store

    data = tmp_path / "coco"
    groups = make_coco(data, tiny_engine, n_correct=4, n_wrong=1, seed=21)
    domains = _domainnet(tmp_path / "dn", data)
    env = subprocess_env()

    # the reference: one process
    single = subprocess.run([sys.executable, "-m", "hearlib", *_run_args(tiny_llava, data, domains, tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = _records(tmp_path / "single")
    stages = {key.split("/")[2].split("-")[0] for key in reference}
    from hearlib.records.stages import STAGES

    assert stages == set(STAGES), stages                                    # every registered stage
    assert len({r.meta["prompt"] for r in reference.values() if "/screen-" in r.key}) == 10   # Table 1's prompts

    # two processes, slowed down (0.3 s per record) so that the kill lands mid-run
    sharded = tmp_path / "sharded"
    proc = subprocess.Popen(_launch(tiny_llava, data, domains, sharded, "--delay", "0.3"), env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if sharded.is_dir() and len(Store(sharded, clean=False).keys()) >= len(reference) // 3:
                break
            time.sleep(0.2)
    finally:
        _kill_tree(proc)
    output = proc.communicate(timeout=60)[0]
    before = _records(sharded)
    assert len(reference) // 3 <= len(before) < len(reference), output[-3000:]
    assert len({r.meta["run"]["pid"] for r in before.values()}) == 2, "both processes should have worked"
    stamps = {key: (rec.meta["run"]["computed_at"], (sharded / key / "meta.json").stat().st_mtime_ns)
              for key, rec in before.items()}

    # restart: finishes the rest, leaves the finished records alone
    done = subprocess.run(_launch(tiny_llava, data, domains, sharded), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done earlier" in done.stderr
    after = _records(sharded)
    assert set(after) == set(reference)
    for key, (computed_at, mtime) in stamps.items():
        assert after[key].meta["run"]["computed_at"] == computed_at
        assert (sharded / key / "meta.json").stat().st_mtime_ns == mtime

    # identical records for every stage, bit for bit: same arrays (dtype, shape and every value;
    # NaN where NaN), same metadata but for where and when
    for key, ref in reference.items():
        got = after[key]
        assert set(got.arrays) == set(ref.arrays), key
        for name, array in ref.arrays.items():
            assert got.arrays[name].dtype == array.dtype, f"{key} {name}"
            np.testing.assert_array_equal(got.arrays[name], array, strict=True, err_msg=f"{key} {name}")
        assert _same(got.meta, ref.meta), (key, got.meta, ref.meta)
    # the same manifest (the skipped wrong answer included), no temporary leftovers or claims
    single_manifest = Store(tmp_path / "single").manifest()
    sharded_manifest = Store(sharded).manifest()
    assert {k: v["status"] for k, v in sharded_manifest.items()} == {k: v["status"] for k, v in single_manifest.items()}
    assert groups["wrong"][0] in {v["sample"] for v in sharded_manifest.values() if v["status"] == "skipped"}
    assert not list(sharded.rglob(".tmp-*")) and not list(sharded.rglob("*.claim"))
