"""How ``make figures`` renders the notebooks of :data:`hearlib.paper.catalogue.NOTEBOOKS`.

``python -m hearlib.paper.render render`` executes them with papermill after ``hearlib run`` has
collected the records (``make figures`` = collect, then render). Each notebook gets the profile
and the overrides (:mod:`hearlib.paper.notebook` resolves every value from them); the terminal
shows one line per notebook with its time. ``--read-only`` (the default in ``make figures``)
sets ``HEARLIB_READ_ONLY=1`` for the kernels: a notebook that finds a record missing stops with
the ``hearlib run`` command that fills it, and no model is ever loaded while rendering.
``prepare`` only injects the parameters (for nbval in ``make test``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hearlib.paper.catalogue import NOTEBOOKS

__all__ = ["notebook_parameters", "render", "check_defaults", "changed_files", "main"]


def _root() -> Path:
    from hearlib import paths

    return paths.ROOT


def notebook_parameters(profile: str, overrides: dict) -> dict:
    """What papermill injects into a notebook's parameters cell: the profile (its name or file) and the
    overrides that are not None (:func:`hearlib.paper.notebook.open_notebook` resolves the rest)."""
    return {"profile": str(profile), "overrides": {k: v for k, v in overrides.items() if v is not None}}


def _source(name: str, folder: Path) -> Path:
    """The notebook's py:percent source as an .ipynb under ``folder`` (jupytext)."""
    import jupytext

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    jupytext.write(jupytext.read(_root() / "notebooks" / f"{name}.py"), path)
    return path


def render(profile: str, overrides: dict, build: Path, *, read_only: bool = True, prepare_only: bool = False,
           names=None, jobs: int = 1) -> list[Path]:
    """Execute (or, with ``prepare_only``, parametrize) the notebooks into ``build``; returns their paths.

    ``jobs`` notebooks run at once (read-only runs only: each reads the store and writes its own
    figures, so they do not depend on each other); the order of the returned paths is the list's."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import papermill
    from hearlib.paper.notebook import notebook_params

    logging.getLogger("papermill").setLevel(logging.ERROR)
    injected = notebook_parameters(profile, overrides)
    out = notebook_params(profile, **overrides)["out"]      # a bad profile or override stops here, before any kernel
    build = Path(build)
    names = list(names or NOTEBOOKS)
    if read_only:
        os.environ["HEARLIB_READ_ONLY"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    parallel = max(1, int(jobs)) if read_only and not prepare_only else 1

    def execute(number: int, name: str) -> Path:
        source = _source(name, build / "src")
        target = build / f"{name}.ipynb"
        running = build / f"{name}.running.ipynb"
        started = time.perf_counter()
        if parallel == 1:
            print(f"[{number}/{len(names)}] {name} ...", end="", file=sys.stderr, flush=True)
        papermill.execute_notebook(str(source), str(running), parameters=injected,
                                   kernel_name="python3", cwd=str(_root()), progress_bar=False, log_output=False,
                                   prepare_only=prepare_only,
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"])   # no TCP transport notice
        os.replace(running, target)
        if not prepare_only:
            _check_inline(target, name, out)
        seconds = f"{time.perf_counter() - started:.0f} s"
        print(f" {seconds}" if parallel == 1 else f"[{number}/{len(names)}] {name} {seconds}", file=sys.stderr, flush=True)
        return target

    if parallel == 1:
        return [execute(number, name) for number, name in enumerate(names, start=1)]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(execute, number, name) for number, name in enumerate(names, start=1)]
        return [future.result() for future in futures]


def inline_files(notebook: Path) -> set[str]:
    """The files whose figure (PNG image) or table (HTML) an executed notebook displays (Report's tags)."""
    import nbformat

    shown = set()
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        for output in cell.get("outputs", []):
            tag = output.get("metadata", {}).get("hearlib", {}).get("name")
            data = output.get("data", {})
            if tag and ("image/png" in data or "<table" in "".join(data.get("text/html", ""))):
                shown.add(tag)
    return shown


def _check_inline(notebook: Path, name: str, out) -> None:
    """Every figure and table the notebook registered is displayed in its executed copy."""
    import json

    from hearlib.errors import UserError
    from hearlib.paths import under_root as resolve_path

    report = resolve_path(out) / ".report" / f"{name}.json"
    if not report.is_file():
        return
    files = {f for item in json.loads(report.read_text())["items"] for f in item["files"] if f.endswith((".png", ".csv"))}
    missing = sorted(files - inline_files(notebook))
    if missing:
        raise UserError(f"{notebook} does not display {', '.join(missing)} inline (Report.figure/table show them)")


def check_defaults(store: Path, names=None) -> list[str]:
    """Execute every notebook as JupyterLab would: from ``notebooks/``, with its own defaults, no
    parameter injected, read-only. Returns the store files that changed (none is the pass)."""
    import nbclient
    import nbformat
    import jupytext

    from hearlib.records.store import Store

    watched = Store(store, clean=False)
    before = watched.snapshot()
    os.environ["HEARLIB_READ_ONLY"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    folder = _root() / "notebooks"
    for number, name in enumerate(names or NOTEBOOKS, start=1):
        started = time.perf_counter()
        print(f"[{number}/{len(names or NOTEBOOKS)}] {name} (defaults, from notebooks/) ...", end="",
              file=sys.stderr, flush=True)
        notebook = nbformat.from_dict(jupytext.read(folder / f"{name}.py"))
        nbclient.NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(folder)}},
                                extra_arguments=["--IPKernelApp.log_level=CRITICAL"]).execute()
        print(f" {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return changed_files(before, watched.snapshot(), watched.root)


def changed_files(before: dict[str, int], after: dict[str, int], root: Path) -> list[str]:
    """The files of two :meth:`Store.snapshot` s that were added, removed or rewritten, as paths under ``root``."""
    changed = set(before) ^ set(after) | {name for name in before if after.get(name) != before[name]}
    return sorted(str(root / name) for name in changed)


def main(argv: list[str] | None = None) -> int:
    from hearlib import paths

    parser = argparse.ArgumentParser(prog="python -m hearlib.paper.render",
                                     description="Execute the study notebooks with papermill (make figures' render step).")
    parser.add_argument("action", choices=("render", "prepare", "check-defaults", "list"),
                        help="render: execute; prepare: inject parameters only (nbval); check-defaults: run each "
                             "notebook with its own defaults from notebooks/ (as in JupyterLab) and check that "
                             "it computes nothing; list: print the notebooks")
    parser.add_argument("--store", type=Path, default=None, help="the store check-defaults watches "
                        "(default: data/store/study)")
    parser.add_argument("--profile", default="quick", help=f"{', '.join(paths.profile_names())} or a YAML file")
    parser.add_argument("--build", type=Path, default=None, help="folder for the executed notebooks")
    parser.add_argument("--lazy", action="store_true",
                        help="let the notebooks compute missing records (small profiles only) instead of stopping")
    parser.add_argument("--only", nargs="+", default=None, help="these notebooks only")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks executed at once by render (read-only runs; default 1)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter for every notebook that declares it (VALUE is YAML)")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(" ".join(NOTEBOOKS))
        return 0
    if args.action == "check-defaults":
        changed = check_defaults(args.store or paths.STORE / "study", args.only)
        if changed:
            print(f"the notebooks wrote {len(changed)} file(s) into the store, e.g. {changed[:3]}", file=sys.stderr)
            return 1
        print("every notebook ran with its defaults and computed nothing", file=sys.stderr)
        return 0
    import yaml

    overrides = {name: yaml.safe_load(value) for name, value in args.param}
    build = args.build or _root() / "build" / "notebooks" / Path(args.profile).stem
    render(args.profile, overrides, build, read_only=not args.lazy and args.action == "render",
           prepare_only=args.action == "prepare", names=args.only, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
