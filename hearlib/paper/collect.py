"""Collect every record the study reads into a store (the work of ``hearlib run``, :mod:`hearlib.cli.run`).

The run computes the requests of :func:`hearlib.paper.plan.study_plan` — each a stage of
:mod:`hearlib.records.stages` for a selection of samples of one (model, dataset) — through
:class:`hearlib.records.pipeline.Pipeline`, the same code path the notebooks read with. ``--profile``
sets the sizes (``quick``, ``paper``, ``ci`` or a YAML file; default: the paper's values), the
flags override them, ``--stages`` picks the groups.

Sharing the work. Processes started by ``accelerate launch --num_processes N`` each begin with
their share of the samples (``i % N == process index``) on their own device; independent
processes (a SLURM array, machines on a shared file system) start at the same place. Either way
every sample is claimed (:mod:`hearlib.records.claims`) before it is computed, so no two processes compute
one sample, and a process that finds a sample claimed comes back to it at the end: it is then
finished, or its owner died and the claim is taken over. Records do not depend on the process,
the order or the process count: masks come from per-sample seeds.

Resuming. A record that exists is not computed again; a stage that failed is retried unless
``--no-retry-failed``. The manifest (``<store>/_manifest/``) holds one status per (sample,
stage): finished, skipped (the model answers wrongly, the answer cannot be tokenized) or failed,
with the reason, and (finished) the seconds the record took to compute.

Time. At the end the run prints the seconds spent computing (not reading) per stage and model —
each stage without the stages it needed, the means, the screening, the model loads — and writes
them with the environment into ``<store>/_runs/<UTC time>-<pid>.json``.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from hearlib.errors import UserError

__all__ = ["run_plan", "time_table", "environment"]

STAGE_ORDER = ("load model", "means", "screen", "attribution", "validation", "text", "image", "lens")


def _distributed_state(device: str | None):
    """accelerate's PartialState (process_index, num_processes, device) for this process."""
    import torch
    from accelerate import PartialState

    use_cpu = (os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
               or (device is not None and str(device).startswith("cpu")) or not torch.cuda.is_available())
    return PartialState(cpu=use_cpu)


def _log(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"hearlib run: {text}", file=sys.stderr)


def run_plan(params: dict, groups, store: str | Path, *, means_file=None, device: str | None = None,
             progress: bool = True, retry_failed: bool = True, claims_timeout: float | None = None,
             delay: float = 0.0, split: str | None = None, kind: str | None = None, fill_command: str = "",
             allow_partial_load: bool = False) -> dict:
    """Compute this process's part of the plan; returns counts (finished, earlier, skipped, failed)."""
    from hearlib.paper.plan import study_plan
    from hearlib.records.store import Store

    state = _distributed_state(device)
    requests = study_plan(params, groups)
    run = PlanRun(params, Store(store), state, device=device or str(state.device), progress=progress,
                  retry_failed=retry_failed, means_file=means_file, delay=delay, split=split, kind=kind,
                  fill_command=fill_command, claims_timeout=claims_timeout, allow_partial_load=allow_partial_load)
    for number, request in enumerate(requests, start=1):
        run.run_request(request, f"[{number}/{len(requests)}]")
    return run.finish(groups)


class PlanRun:
    """One process's run of a plan (:func:`run_plan`): the pipelines (one per dataset), the engines
    they share (one per model), the selections made, and the counts every step adds to."""

    def __init__(self, params: dict, store, state, *, device: str, progress: bool, retry_failed: bool,
                 means_file, delay: float, split: str | None, kind: str | None, fill_command: str,
                 claims_timeout: float | None, allow_partial_load: bool):
        self.params, self.store = params, store
        self.rank, self.world = state.process_index, state.num_processes
        self.device, self.progress = device, progress and state.is_local_main_process
        self.retry_failed, self.means_file, self.delay = retry_failed, means_file, delay
        self.split, self.kind, self.fill_command = split, kind, fill_command
        self.claims_timeout, self.allow_partial_load = claims_timeout, allow_partial_load
        self.counts = {"finished": 0, "earlier": 0, "skipped": 0, "failed": 0}
        self.engines: dict[str, object] = {}
        self.pipelines: dict[tuple, object] = {}
        self.selections: dict[tuple, tuple[list, list]] = {}
        self.failed_keys: set[str] = set()
        self.started = time.time()

    def run_request(self, request, label: str) -> None:
        """Compute one request's records (``label``: its place in the plan, for the progress bar)."""
        pipe = self.pipeline_for(request)
        samples = self.samples_of(request, pipe)
        if samples is None:
            return
        chosen, excluded = samples
        self.mark_excluded(request, pipe, excluded)
        made_under = self.compute_request(request, pipe, chosen, label)
        self.warn_mixed_versions(request, made_under)
        self.keep_engine(request, pipe)

    def pipeline_for(self, request):
        """The pipeline of the request's dataset, made on first use (with the engine of its model when
        a pipeline of another dataset loaded it: one model load per model)."""
        from hearlib.prompts import PAPER_PROMPT
        from hearlib.records.claims import DEFAULT_TIMEOUT
        from hearlib.records.pipeline import Pipeline

        dataset, params = request.dataset, self.params
        if dataset not in self.pipelines:
            self.pipelines[dataset] = Pipeline(
                request.model, request.data, kind=request.kind or self.kind, domains=request.domains,
                store=self.store, n_mean_images=params["n_mean_images"], method=params["method"],
                batch_size=params["batch_size"], device=self.device, progress=self.progress,
                means_file=self.means_file, means_prompt=params.get("prompt") or PAPER_PROMPT,
                engine=self.engines.get(request.model), split=self.split, fill_command=self.fill_command,
                claims_timeout=self.claims_timeout or DEFAULT_TIMEOUT, allow_partial_load=self.allow_partial_load)
            self.pipelines[dataset].delay = self.delay
        return self.pipelines[dataset]

    def keep_engine(self, request, pipe) -> None:
        """Remember the model's engine once a pipeline has loaded it, for the model's other datasets."""
        if pipe.engine_loaded:
            self.engines[request.model] = pipe.engine

    def samples_of(self, request, pipe) -> tuple[list, list] | None:
        """(chosen, excluded) of the request's selection, made once per dataset; None, counted as a
        failure, when it has no samples. With a means file the means are read first."""
        from hearlib.records.pipeline import NoSamples

        dataset = request.dataset
        try:
            if self.means_file is not None and request.settings.prompt == pipe.means_prompt:
                pipe.means(request.settings.prompt)      # a means file of another model stops here
            if (dataset, request.selection) not in self.selections:
                chosen = pipe.select(request.selection)
                self.selections[(dataset, request.selection)] = (chosen, pipe.excluded)
            return self.selections[(dataset, request.selection)]
        except NoSamples as error:
            _log(f"{request.group} ({request.model}): {error}")
            self.counts["failed"] += 1
            return None
        finally:
            self.keep_engine(request, pipe)

    def mark_excluded(self, request, pipe, excluded) -> None:
        """Write the status of the samples the selection left out (skipped or failed) to the manifest,
        unless it holds a better one, and count each failure once."""
        for item, reason, status in excluded:
            key = pipe.key(request.stage, request.settings, item)
            previous = self.store.status(key)
            if previous is None or previous["status"] == "failed" or status == "failed":
                self.store.mark(key, status, reason, info={"sample": str(item.image_id), "label": item.label,
                                                           "stage": request.stage, "path": str(item.path)})
                if key not in self.failed_keys:
                    self.counts[status] += 1
                    if status == "failed":
                        self.failed_keys.add(key)

    def compute_request(self, request, pipe, chosen: list, label: str) -> set[str]:
        """Compute the chosen samples, this process's share first and the samples another process
        held at the end; returns the transformers versions of the request's records."""
        from tqdm.auto import tqdm

        rank, world = self.rank, self.world
        order = chosen[rank::world] + [it for i, it in enumerate(chosen) if i % world != rank]
        bar = tqdm(total=len(order), desc=f"{label} {request.group}: {request.stage} "
                   f"({Path(request.model).name})", unit="sample", file=sys.stderr, disable=not self.progress)
        deferred = []
        made_under: set[str] = set()        # transformers versions of this request's records
        for attempt in (0, 1):
            for item in (order if attempt == 0 else deferred):
                if not self.compute_sample(request, pipe, item, attempt == 1, made_under):
                    deferred.append(item)    # another process holds it: come back at the end
                    continue
                bar.update(1)
        bar.close()
        return made_under

    def compute_sample(self, request, pipe, item, block: bool, made_under: set[str]) -> bool:
        """One sample's record, computed unless it exists (or failed before, under ``retry_failed``
        False), counted; False when another process holds it (``block`` False)."""
        from hearlib.records.stages import StageFailed

        key = pipe.key(request.stage, request.settings, item)
        status = self.store.status(key)
        if self.store.exists(key) or (not self.retry_failed and status and status["status"] == "failed"):
            made_under.update(_made_under(self.store, key))
            self.counts["earlier"] += 1
            return True
        before = len(pipe.computed)
        try:
            record = pipe.ensure(request.stage, item, request.settings, block=block)
        except StageFailed as error:     # one sample never stops the run
            self.counts["failed"] += key not in self.failed_keys
            self.failed_keys.add(key)
            _log(f"sample {item.image_id} ({item.label}), {request.stage}: failed: {error}")
            if error.__cause__ is not None and not isinstance(error.__cause__, UserError):
                _log("".join(traceback.format_exception(error.__cause__, limit=-4)))
            return True
        if record is None:
            return False
        made_under.update(_made_under(self.store, key))
        if key in pipe.computed[before:]:
            self.counts["finished"] += 1
            if record.meta.get("answer_note"):
                _log(f"sample {item.image_id}: note: {record.meta['answer_note']}")
        else:
            self.counts["earlier"] += 1
        return True

    @staticmethod
    def warn_mixed_versions(request, made_under: set[str]) -> None:
        """Say so when the request's records were made under more than one transformers version."""
        if len(made_under) > 1:
            _log(f"warning: the {request.stage} records of {Path(request.model).name} in this store were made under "
                 f"transformers {', '.join(sorted(made_under))}; numbers may move with the version (each record's "
                 "meta.json holds its environment)")

    def finish(self, groups) -> dict:
        """Close the pipelines, print the time table and the counts, write the run summary
        (``<store>/_runs/``) and return it."""
        for pipe in self.pipelines.values():
            pipe.close()
        wall = time.time() - self.started
        seconds, records = _seconds_by_model(self.pipelines)
        counts, rank, world = self.counts, self.rank, self.world
        summary = {**counts, "process_index": rank, "num_processes": world, "wall_s": wall,
                   "seconds": seconds, "records": records}
        print(time_table(seconds, records, wall), file=sys.stderr, flush=True)
        try:
            path = _write_summary(self.store.root, {**summary, "started_at": self.started, "groups": list(groups),
                                                    "params": self.params, "environment": environment()})
            summary["summary_path"] = str(path)
        except OSError as error:         # a read-only store still prints its table
            _log(f"cannot write the run summary: {error}")
        print(f"hearlib run: process {rank + 1}/{world}: {counts['finished']} computed, {counts['earlier']} done "
              f"earlier, {counts['skipped']} skipped, {counts['failed']} failed in {wall / 60:.1f} min; store "
              f"{self.store.root}", file=sys.stderr, flush=True)
        return summary


# ----------------------------------------------------------------------------- time accounting

def _seconds_by_model(pipelines: dict) -> tuple[dict, dict]:
    """{model name: {stage: seconds}} and {model name: {stage: records}} summed over datasets."""
    seconds: dict[str, dict[str, float]] = {}
    records: dict[str, dict[str, int]] = {}
    for pipe in pipelines.values():
        name = Path(pipe.model).name or pipe.model
        for what, value in pipe.seconds.items():
            seconds.setdefault(name, {})[what] = seconds.get(name, {}).get(what, 0.0) + value
        for what, value in pipe.counts.items():
            records.setdefault(name, {})[what] = records.get(name, {}).get(what, 0) + value
    return seconds, records


def time_table(seconds: dict, records: dict, wall: float) -> str:
    """The seconds of :func:`run_plan` as a text table: one row per stage (records computed in
    brackets), one column per model, totals."""
    models = list(seconds)
    stages = [s for s in STAGE_ORDER if any(s in seconds[m] for m in models)]
    stages += sorted({s for m in models for s in seconds[m]} - set(stages))
    if not stages:
        return f"hearlib run: nothing computed ({wall:.0f} s)"
    width = max(14, *(len(m) + 2 for m in models))
    lines = ["hearlib run: seconds spent computing (records computed)",
             f"  {'stage':<12}" + "".join(f"{m:>{width}}" for m in models) + f"{'total':>{width}}"]

    def cell(value, n=None):
        return f"{value:.1f}" + (f" ({n})" if n else "")

    for stage in stages:
        row = [seconds[m].get(stage) for m in models]
        numbers = [records[m].get(stage) for m in models]
        total = sum(v for v in row if v is not None)
        lines.append(f"  {stage:<12}" + "".join(f"{'-' if v is None else cell(v, n):>{width}}"
                                                 for v, n in zip(row, numbers))
                     + f"{cell(total, sum(n or 0 for n in numbers) or None):>{width}}")
    totals = [sum(seconds[m].values()) for m in models]
    lines.append(f"  {'total':<12}" + "".join(f"{cell(v):>{width}}" for v in totals) + f"{cell(sum(totals)):>{width}}")
    lines.append(f"  wall clock {wall:.1f} s; the rest ({max(0.0, wall - sum(totals)):.1f} s) went to reading and "
                 "writing records, claims and waiting for other processes")
    return "\n".join(lines)


def _made_under(store, key: str) -> set[str]:
    """The transformers version a stored record was computed under (empty for records older than
    the environment field, and for records not there)."""
    import json

    try:
        meta = json.loads((store.path(key) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    version = (meta.get("environment") or {}).get("transformers")
    return {str(version)} if version else set()


def environment() -> dict:
    """What the speed depends on: versions, threads, BLAS, CPU count, thread-related variables."""
    import platform

    import numpy
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "numpy": numpy.__version__,
           "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           **{name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}}
    config = torch.__config__.show().replace(",", "\n").splitlines()       # torch's own (linked) BLAS
    env["torch_blas"] = [line.strip() for line in config if "BLAS_INFO" in line or "LAPACK_INFO" in line]
    env["torch_parallel"] = torch.__config__.parallel_info().splitlines()[-1].strip()
    try:
        from threadpoolctl import threadpool_info      # numpy's / scikit-learn's BLAS and OpenMP

        env["blas"] = [{k: pool.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
                       for pool in threadpool_info()]
    except ImportError:
        env["blas"] = None
    return env


def _write_summary(root: Path, summary: dict) -> Path:
    from datetime import datetime, timezone

    from hearlib.io import save_json

    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"     # two runs in a second
    return save_json(Path(root) / "_runs" / f"{stamp}-{os.getpid()}.json", summary)
