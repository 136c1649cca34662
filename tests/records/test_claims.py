"""Claims: independent processes on one store compute each sample once, and a dead owner's claim is
taken over."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_collect"]


def test_a_claim_is_held_by_one_owner_until_released(tmp_path):
    from hearlib.records.claims import Claims

    with Claims(tmp_path, timeout=30) as a, Claims(tmp_path, timeout=30) as b:
        assert a.acquire("m/d/1") and a.acquire("m/d/1")        # re-entrant for its owner
        assert not b.acquire("m/d/1") and b.claimed_by_other("m/d/1")
        assert b.acquire("m/d/2")
        a.release("m/d/1")
        assert b.acquire("m/d/1")
    assert not list(tmp_path.rglob("*.claim"))                 # closing releases everything


def test_the_heartbeat_keeps_a_claim_fresh_and_a_silent_one_goes_stale(tmp_path):
    from hearlib.records.claims import Claims

    with Claims(tmp_path, timeout=1.0, heartbeat=0.2) as a, Claims(tmp_path, timeout=1.0) as b:
        assert a.acquire("x")
        time.sleep(1.6)
        assert not b.acquire("x"), "a live owner's heartbeat keeps its claim"
    # an owner on another machine that stopped beating: taken over once older than the timeout
    path = tmp_path / "y.claim"
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t", "time": 0}))
    with Claims(tmp_path, timeout=1.0) as c:
        assert not c.acquire("y")
        old = time.time() - 5
        os.utime(path, (old, old))
        assert c.acquire("y") and json.loads(path.read_text())["token"] == c.token


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    from hearlib.records.claims import Claims

    code = ("import sys, time; from hearlib.records.claims import Claims; c = Claims(sys.argv[1], timeout=3600); "
            "assert c.acquire('z'); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with Claims(tmp_path, timeout=3600) as mine:
            assert not mine.acquire("z")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert mine.acquire("z")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_opening_the_store_removes_the_claims_a_killed_writer_left_and_keeps_live_ones(tmp_path):
    """A writer killed after its record was written, before it released the claim, leaves a claim
    nobody needs again (the record exists); opening the store removes it, as it removes ``.tmp-*``."""
    from hearlib.records.claims import Claims
    from hearlib.records.store import CLAIMS_FOLDER, Store

    folder = tmp_path / CLAIMS_FOLDER
    code = ("import sys, time; from hearlib.records.claims import Claims; c = Claims(sys.argv[1], timeout=3600); "
            "assert c.acquire('dead'); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Claims(folder, timeout=3600) as live:
        assert live.acquire("live")
        removed = Store(tmp_path, clean=False).clean()        # what opening it (clean=True) runs
        assert [p.name for p in removed] == ["dead.claim"]
        assert sorted(p.name for p in folder.glob("*.claim")) == ["live.claim"] and live.held("live")


def _hearlib_run(model, data, out, *extra) -> list[str]:
    return [sys.executable, "-m", "hearlib", "run", "--model", str(model), "--data", str(data), "--out", str(out),
            "--stages", "attribution", "--n-samples", "6", "--n-masks", "32", "--n-mean-images", "3",
            "--batch-size", "32", "--no-progress", *extra]


@pytest.fixture(scope="module")
def coco(tiny_engine, tmp_path_factory):
    from fixtures_collect import make_coco

    root = tmp_path_factory.mktemp("claims-coco")
    make_coco(root, tiny_engine, n_correct=6, seed=8)
    return root


def _attribution_records(out: Path) -> dict:
    from hearlib.records.store import Store

    store = Store(out, clean=False)
    return {key: store.get(key) for key in store.keys() if "/attribution-" in key}


def test_two_independent_runs_on_one_store_compute_each_sample_once(tiny_llava, coco, tmp_path):
    from fixtures_collect import subprocess_env

    out = tmp_path / "store"
    cmd = _hearlib_run(tiny_llava, coco, out, "--delay", "0.5")
    procs = [subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    computed = []
    for _, err in results:
        line = next(l for l in err.splitlines() if "computed," in l)
        computed.append(int(line.split("process 1/1: ")[1].split(" computed")[0]))
    records = _attribution_records(out)
    assert len(records) == 6
    assert sum(computed) == 6, f"each sample once between the two runs, got {computed}"
    assert all(c > 0 for c in computed), f"both runs should have shared the work, got {computed}"
    assert len({r.meta["run"]["pid"] for r in records.values()}) == 2


def test_a_run_killed_mid_sample_leaves_its_claim_to_the_next(tiny_llava, coco, tmp_path):
    from fixtures_collect import subprocess_env

    out = tmp_path / "store"
    # the first run holds each claim 60 s before computing: killed while it holds the first one
    first = subprocess.Popen(_hearlib_run(tiny_llava, coco, out, "--delay", "60"), env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    claims = out / "_claims"
    held = []
    while time.time() < deadline and not held:
        held = [p for p in claims.rglob("*.claim") if "_means" not in str(p)] if claims.is_dir() else []
        time.sleep(0.2)
    assert held, "the first run never claimed a sample"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert held[0].exists() and not _attribution_records(out)
    # the next run finds the dead owner's claim and takes the sample over
    second = subprocess.run(_hearlib_run(tiny_llava, coco, out), env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(_attribution_records(out)) == 6
    assert not [p for p in claims.rglob("*.claim")]
