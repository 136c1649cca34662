"""Writing the paper's items: figures (PNG + PDF), tables (CSV + Markdown), headline numbers.

Every notebook makes a :class:`Report`; each figure/table/headline it registers is recorded in
``<out>/.report/<notebook>.json``, and :func:`write_readme` turns all of them into
``<out>/README.md``: per paper item its files, the settings it ran with, and the headline number
beside the paper's (``python -m hearlib.report --out figures`` regenerates it).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hearlib import paths

__all__ = ["Report", "markdown_table", "write_readme", "resolve_path", "fmt_pm", "head_grid"]


def resolve_path(path: str | Path) -> Path:
    """A path relative to the repository root (notebooks run with any working directory)."""
    path = Path(str(path)).expanduser()
    return path if path.is_absolute() else paths.ROOT / path


def fmt_pm(values, digits: int = 2) -> str:
    """``"mean ± std"`` of finite values (population std), as the paper's tables print them."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def head_grid(ax) -> None:
    """Label an L × H heat map of heads: integer layer and head ticks (no 0.5 steps on small models)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df) -> str:
    """A GitHub Markdown table of a pandas DataFrame (index dropped; no tabulate needed)."""
    header = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


class Report:
    """Registers what one notebook writes; see the module docstring."""

    def __init__(self, notebook: str, out: str | Path = "figures", settings: dict | None = None):
        self.notebook = notebook
        self.out = paths.ensure(resolve_path(out))
        self.settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in (settings or {}).items()}
        self.items: dict[str, dict[str, Any]] = {}
        self._file = self.out / ".report" / f"{notebook}.json"

    def _item(self, item: str) -> dict:
        return self.items.setdefault(item, {"item": item, "files": [], "headlines": []})

    def _save(self) -> None:
        from hearlib.io import save_json

        save_json(self._file, {"notebook": self.notebook, "settings": self.settings,
                               "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "items": list(self.items.values())})

    def figure(self, fig, name: str, item: str, dpi: int = 150) -> None:
        """Save ``fig`` as ``<out>/<name>.png`` and ``.pdf`` for paper item ``item`` (e.g. "Fig. 7")."""
        import matplotlib.pyplot as plt

        from hearlib.io import save_bytes

        written = []
        for suffix in (".png", ".pdf"):
            path = self.out / f"{name}{suffix}"
            save_bytes(path, lambda stream: fig.savefig(stream, format=suffix[1:], dpi=dpi, bbox_inches="tight"))
            written.append(path)
        plt.close(fig)
        self._item(item)["files"] += [p.name for p in written if p.name not in self._item(item)["files"]]
        self._save()

    def table(self, df, name: str, item: str, caption: str = "") -> None:
        """Save ``df`` as ``<out>/<name>.csv`` and ``<out>/<name>.md``."""
        from hearlib.io import save_text

        csv = self.out / f"{name}.csv"
        md = self.out / f"{name}.md"
        save_text(csv, df.to_csv(index=False))
        save_text(md, (f"{caption}\n\n" if caption else "") + markdown_table(df))
        self._item(item)["files"] += [p.name for p in (csv, md) if p.name not in self._item(item)["files"]]
        self._save()

    def headline(self, item: str, what: str, value: str, paper: str, note: str = "") -> None:
        """Record and print one headline: ours beside the paper's, and where they disagree."""
        entry = {"what": what, "value": value, "paper": paper, "note": note}
        headlines = self._item(item)["headlines"]
        headlines[:] = [h for h in headlines if h["what"] != what] + [entry]
        self._save()
        line = f"{item} — {what}: {value} (paper: {paper})" + (f"\n    {note}" if note else "")
        print(line)

    def write_readme(self) -> None:
        write_readme(self.out)


def _item_key(item: str):
    import re

    m = re.match(r"(Fig|Table)\.?\s*(\d+)([A-Z]?)", item)
    if not m:
        return (2, 0, item)
    return (0 if m.group(1) == "Fig" else 1, int(m.group(2)), m.group(3))


def missing_files(out: str | Path = "figures") -> list[str]:
    """Files the notebooks registered under ``out`` that are absent or empty."""
    out = resolve_path(out)
    bad = []
    for file in sorted((out / ".report").glob("*.json")):
        for item in json.loads(file.read_text())["items"]:
            bad += [f for f in item["files"] if not (out / f).is_file() or (out / f).stat().st_size == 0]
    return bad


def write_readme(out: str | Path = "figures") -> Path:
    """``<out>/README.md`` from every ``<out>/.report/*.json``; rewritten only if its text changes.

    It holds results and settings, no run times, so reruns with the same results leave it as is."""
    return _write_readme(resolve_path(out))[0]


def _write_readme(out: Path) -> tuple[Path, bool]:
    reports = []
    for file in sorted((out / ".report").glob("*.json")):
        try:
            reports.append(json.loads(file.read_text()))
        except json.JSONDecodeError:
            continue
    rows = []
    for rep in reports:
        for item in rep["items"]:
            rows.append((item, rep))
    rows.sort(key=lambda r: _item_key(r[0]["item"]))
    lines = ["# Figures and tables of the paper, regenerated", "",
             "Generated by `make figures` (`hearlib.report`); do not edit by hand. Each paper item, the files",
             "that reproduce it, the notebook and settings it ran with, and the headline number beside the",
             "paper's. The paper's numbers are for LLaVA-1.5-7B unless stated; ours are for the model in the",
             "settings column (by default the project's model organism, a small LLaVA-architecture model",
             "trained on synthetic scenes), so agreement is expected in kind, not in value.", "",
             "| paper item | files | ours | paper | notebook |", "| --- | --- | --- | --- | --- |"]
    for item, rep in rows:
        files = ", ".join(f"[{f}]({f})" for f in item["files"]) or "—"
        ours = "<br>".join(f"{h['what']}: **{h['value']}**" for h in item["headlines"]) or "—"
        paper = "<br>".join(h["paper"] for h in item["headlines"]) or "—"
        lines.append(f"| {item['item']} | {files} | {ours} | {paper} | {rep['notebook']} |")
    lines += ["", "## Notes where the organism disagrees with the paper", ""]
    for item, rep in rows:
        for h in item["headlines"]:
            if h.get("note"):
                lines.append(f"- **{item['item']}** ({h['what']}): {h['note']}")
    lines += ["", "## Settings per notebook", "",
              "When each notebook last ran is in `.report/<notebook>.json` (not tracked), so this file",
              "changes only when results or settings do.", ""]
    for rep in reports:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(rep["settings"].items()))
        lines.append(f"- `{rep['notebook']}`: {settings}")
    from hearlib.io import save_text_if_changed

    readme = out / "README.md"
    return readme, save_text_if_changed(readme, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearlib.report", description="regenerate figures/README.md")
    parser.add_argument("--out", default=str(paths.FIGURES), help="figures folder (default: %(default)s)")
    args = parser.parse_args(argv)
    readme, changed = _write_readme(resolve_path(args.out))
    print(f"wrote {readme}" if changed else f"{readme} is up to date")
    bad = missing_files(args.out)
    if bad:
        print(f"error: {len(bad)} registered file(s) missing or empty: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
