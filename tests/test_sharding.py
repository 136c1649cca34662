"""A two-process CPU run with accelerate, killed part-way and restarted, writes the records of a
single-process run, and recomputes nothing that had finished.

accelerate 1.15 starts several CPU processes through torchrun with ``--multi_gpu`` (``--cpu``
with ``--num_processes`` > 1 needs mpirun); on this GPU-less machine hearlib.collect asks
``PartialState`` for CPU processes, so the two workers form a gloo group on CPU. Every option
is given on the command line: no accelerate config file is read or needed.
"""
from __future__ import annotations

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

N_SAMPLES = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accelerate() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def _run_args(model, data, out, *extra) -> list[str]:
    return ["run", "--model", str(model), "--data", str(data), "--out", str(out), "--n-samples", str(N_SAMPLES),
            "--n-masks", "64", "--n-mean-images", "3", "--batch-size", "32", "--no-progress", *extra]


def _launch(model, data, out, *extra) -> list[str]:
    return [*_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
            "-m", "hearlib", *_run_args(model, data, out, *extra)]


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
    from hearlib.store import Store

    store = Store(store_root, clean=False)
    return {key: store.get(key) for key in store.keys()}


def test_two_process_run_killed_and_resumed_equals_single_process(tiny_llava, tiny_engine, tmp_path):
    from fixtures_collect import make_coco, subprocess_env

    from hearlib.store import Store

    data = tmp_path / "coco"
    groups = make_coco(data, tiny_engine, n_correct=10, n_wrong=2, seed=21)
    env = subprocess_env()

    # the reference: one process
    single = subprocess.run([sys.executable, "-m", "hearlib", *_run_args(tiny_llava, data, tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = _records(tmp_path / "single")
    assert len(reference) == 10

    # two processes, slowed down (1 s per sample) so that the kill lands mid-run
    sharded = tmp_path / "sharded"
    proc = subprocess.Popen(_launch(tiny_llava, data, sharded, "--delay", "1.0"), env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if sharded.is_dir() and len(Store(sharded, clean=False).keys()) >= 3:
                break
            time.sleep(0.1)
    finally:
        _kill_tree(proc)
    output = proc.communicate(timeout=60)[0]
    before = _records(sharded)
    assert 3 <= len(before) < 10, output[-3000:]
    assert {r.meta["process_index"] for r in before.values()} == {0, 1}, "both processes should have worked"
    stamps = {key: (rec.meta["run_id"], rec.meta["computed_at"],
                    (sharded / key / "meta.json").stat().st_mtime_ns) for key, rec in before.items()}

    # restart: finishes the rest, leaves the finished records alone
    done = subprocess.run(_launch(tiny_llava, data, sharded), env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done earlier" in done.stderr
    after = _records(sharded)
    assert set(after) == set(reference)
    for key, (run_id, computed_at, mtime) in stamps.items():
        assert after[key].meta["run_id"] == run_id and after[key].meta["computed_at"] == computed_at
        assert (sharded / key / "meta.json").stat().st_mtime_ns == mtime
    assert {after[k].meta["run_id"] for k in set(after) - set(before)}.isdisjoint({s[0] for s in stamps.values()})
    assert {r.meta["num_processes"] for r in after.values()} == {2}

    # identical records: same masks, same logits, same fit
    for key, ref in reference.items():
        got = after[key]
        assert set(got.arrays) == set(ref.arrays)
        np.testing.assert_array_equal(got.arrays["masks"], ref.arrays["masks"])
        for name in ("logits", "pi", "coef", "image_attention", "logit_intact", "logit_ablated", "r2_curve"):
            np.testing.assert_allclose(got.arrays[name], ref.arrays[name], rtol=0, atol=1e-6, err_msg=name)
    # the same manifest (both skipped wrong answers included), no temporary leftovers
    single_manifest = Store(tmp_path / "single").manifest()
    sharded_manifest = Store(sharded).manifest()
    assert {k: v["status"] for k, v in sharded_manifest.items()} == {k: v["status"] for k, v in single_manifest.items()}
    assert sorted(v["sample"] for v in sharded_manifest.values() if v["status"] == "skipped") == sorted(groups["wrong"])
    assert not list(sharded.rglob(".tmp-*"))
