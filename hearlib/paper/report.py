"""Writing the paper's items: figures (PNG + PDF), tables (CSV + Markdown), headline numbers.

Every notebook makes a :class:`Report`; each figure/table/headline it registers is recorded in
``<out>/.report/<notebook>.json`` and, in a kernel (JupyterLab, papermill), also displayed inline.
:func:`write_results` turns all of them into the generated ``<out>/RESULTS.md`` (not tracked): per
paper item its files, the settings it ran with, and the headline number beside the paper's; a
notebook that has not run yet keeps its items, marked "not run yet" (``python -m hearlib.paper.report
--out figures`` regenerates it).

The committed ``figures/README.md`` is the *published* copy. Only :func:`publish` (``python -m
hearlib.paper.report publish``, the end of ``make render``) rewrites it, and only for the published
configuration: out is the repository's ``figures/``, profile quick, the default models and
generated data, every notebook's report present and run with those settings. Anything else (one
notebook run by hand, ``PROFILE=ci``, another ``MODEL=``/``FIGURES=``) leaves it byte-identical.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hearlib import paths

__all__ = ["Report", "VERDICTS", "markdown_table", "write_results", "publish", "fmt_pm", "head_grid"]

PUBLISHED_PROFILE = "quick"        # the configuration whose results figures/README.md holds
# how a headline compares with the paper, as the README's first table says it
VERDICTS = ("agrees", "weaker", "disagrees", "beyond the paper")


def fmt_pm(values, digits: int = 2) -> str:
    """``"mean ± std"`` of finite values (population std), as the paper's tables print them."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def head_grid(ax, layers: Sequence[int] | None = None) -> None:
    """Label an L × H heat map of heads: integer layer and head ticks (no 0.5 steps on small models).
    ``layers``: the decoder layer of each row where HeAr covers some layers only (Mllama's cross-attention
    layers; :meth:`hearlib.paper.study.Study.layer_rows`), which label the rows."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("head")
    if layers is None:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("layer")
    else:
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_ylabel("decoder layer (covered ones)")


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


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), where results are shown inline."""
    shell = sys.modules.get("IPython")
    shell = shell and shell.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show(obj, item: str, name: str) -> None:
    """Display ``obj``, its output tagged ``{"hearlib": {"item", "name"}}`` (the browser test counts them)."""
    if in_kernel():
        from IPython.display import display

        display(obj, metadata={"hearlib": {"item": item, "name": name}})


class Report:
    """Registers what one notebook writes; see the module docstring."""

    def __init__(self, notebook: str, out: str | Path = "figures", settings: dict | None = None):
        self.notebook = notebook
        self.out = paths.ensure(paths.under_root(out))
        self.settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in (settings or {}).items()}
        self.items: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, str] = {}
        self._file = self.out / ".report" / f"{notebook}.json"

    def _item(self, item: str) -> dict:
        return self.items.setdefault(item, {"item": item, "files": [], "headlines": []})

    def _save(self) -> None:
        from hearlib.io import save_json

        from hearlib.method.checks import versions

        save_json(self._file, {"notebook": self.notebook, "settings": self.settings, "versions": versions(),
                               "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "items": list(self.items.values()),
                               "sections": [{"title": t, "markdown": m} for t, m in self.sections.items()]})

    def figure(self, fig, name: str, item: str, dpi: int = 150, why: str | None = None) -> None:
        """Save ``fig`` as ``<out>/<name>.png`` and ``.pdf`` for paper item ``item`` (e.g. "Fig. 7"); in a
        kernel, also display the saved PNG inline (the notebooks draw with Agg, so nothing else shows it).

        A placeholder (:func:`hearlib.paper.plotting.message_figure`, nothing drawn) is refused unless ``why``
        says in words why there is nothing to draw; the reason is kept with the item."""
        import io

        import matplotlib.pyplot as plt

        from hearlib.io import save_bytes

        placeholder = getattr(fig, "hearlib_placeholder", None)
        if placeholder is not None and not (why and why.strip()):
            plt.close(fig)
            raise ValueError(f"{self.notebook}: {name} ({item}) is a placeholder figure ({placeholder!r}); "
                             "draw the item, or pass why= to say why there is nothing to draw")
        if placeholder is not None:
            self._item(item).setdefault("placeholders", []).append({"file": f"{name}.png", "why": why})

        written = []
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=dpi, bbox_inches="tight")
        png = png.getvalue()
        save_bytes(self.out / f"{name}.png", lambda stream: stream.write(png))
        save_bytes(self.out / f"{name}.pdf", lambda stream: fig.savefig(stream, format="pdf", dpi=dpi, bbox_inches="tight"))
        written = [self.out / f"{name}.png", self.out / f"{name}.pdf"]
        plt.close(fig)
        if in_kernel():
            from IPython.display import Image

            _show(Image(data=png, format="png"), item, f"{name}.png")
        self._item(item)["files"] += [p.name for p in written if p.name not in self._item(item)["files"]]
        self._save()

    def table(self, df, name: str, item: str, caption: str = "") -> None:
        """Save ``df`` as ``<out>/<name>.csv`` and ``<out>/<name>.md``; in a kernel, also display it."""
        from hearlib.io import save_text

        csv = self.out / f"{name}.csv"
        md = self.out / f"{name}.md"
        save_text(csv, df.to_csv(index=False))
        save_text(md, (f"{caption}\n\n" if caption else "") + markdown_table(df))
        self._item(item)["files"] += [p.name for p in (csv, md) if p.name not in self._item(item)["files"]]
        self._save()
        if in_kernel():
            from IPython.display import Markdown

            display_caption = f"**{item}** · `{name}`" + (f": {caption}" if caption else "")
            _show(Markdown(display_caption), item, f"{name}.md")
            _show(df, item, f"{name}.csv")

    def headline(self, item: str, what: str, value: str, paper: str, note: str = "", verdict: str | None = None) -> None:
        """Record one headline, ours beside the paper's, with its ``verdict`` (one of :data:`VERDICTS`,
        computed by the notebook from the numbers) and a note where they differ; shown as one sentence
        (Markdown in a kernel, a printed line elsewhere)."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        entry = {"what": what, "value": value, "paper": paper, "note": note,
                 **({"verdict": verdict} if verdict else {})}
        headlines = self._item(item)["headlines"]
        headlines[:] = [h for h in headlines if h["what"] != what] + [entry]
        self._save()
        if in_kernel():
            from IPython.display import Markdown

            _show(Markdown(verdict_sentence(item, entry)), item, f"verdict: {what}")
        else:
            print(verdict_sentence(item, entry).replace("**", ""))

    def section(self, title: str, markdown: str) -> None:
        """A section of its own in RESULTS.md (and the published README), after the items' table:
        for results that read better as their own table (the organisms side by side)."""
        self.sections[title] = markdown.strip()
        self._save()
        if in_kernel():
            from IPython.display import Markdown

            display(Markdown(f"### {title}\n\n{markdown}"))

    def save_settings(self, **values) -> None:
        """Add settings known only once the notebook has run (which layers HeAr covered) and save them."""
        self.settings.update(values)
        self._save()

    def write_results(self) -> Path:
        """``<out>/RESULTS.md`` (never the published figures/README.md; see :func:`publish`)."""
        return write_results(self.out)

    write_readme = write_results        # the name the notebooks call


def verdict_sentence(item: str, headline: dict) -> str:
    """One headline as a sentence: "**Fig. 7 · weaker.** share of ...: 40% (paper: 80%). note"."""
    verdict = headline.get("verdict")
    lead = f"**{item} · {verdict}.**" if verdict else f"**{item}.**"
    note = f" {headline['note']}" if headline.get("note") else ""
    return f"{lead} {headline['what']}: {headline['value']} (paper: {headline['paper']}).{note}"


def _item_key(item: str):
    import re

    m = re.match(r"(Fig|Table)\.?\s*(\d+)([A-Z]?)", item)
    if not m:
        return (2, 0, item)
    return (0 if m.group(1) == "Fig" else 1, int(m.group(2)), m.group(3))


def missing_files(out: str | Path = "figures") -> list[str]:
    """Files the notebooks registered under ``out`` that are absent or empty."""
    out = paths.under_root(out)
    bad = []
    for file in sorted((out / ".report").glob("*.json")):
        for item in json.loads(file.read_text())["items"]:
            bad += [f for f in item["files"] if not (out / f).is_file() or (out / f).stat().st_size == 0]
    return bad


def _reports(out: Path) -> list[dict]:
    reports = []
    for file in sorted((out / ".report").glob("*.json")):
        try:
            reports.append(json.loads(file.read_text()))
        except json.JSONDecodeError:
            continue
    return reports


def published_rows(readme: Path) -> dict[str, list[tuple[str, str]]]:
    """Per notebook, the (paper item, paper's value) rows of a published README (empty if none)."""
    rows: dict[str, list[tuple[str, str]]] = {}
    if not readme.is_file():
        return rows
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):          # the items' table ends where the sections begin
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and line.startswith("| ") and cells[0] not in ("paper item", "---"):
            rows.setdefault(cells[4], []).append((cells[0], cells[3]))
    return rows


def results_text(out: Path, reports: list[dict] | None = None) -> str:
    """The Markdown of ``<out>/RESULTS.md``: the run's reports, and every notebook of
    :data:`hearlib.paper.catalogue.REPORTING` that has not run yet (its items taken from the published
    README, else one row) marked "not run yet"."""
    from hearlib.paper.catalogue import REPORTING

    reports = _reports(out) if reports is None else reports
    rows = []
    for rep in reports:
        for item in rep["items"]:
            files = ", ".join(f"[{f}]({f})" for f in item["files"]) or "—"
            ours = "<br>".join(f"{h['what']}: **{h['value']}**" + (f" ({h['verdict']})" if h.get("verdict") else "")
                               for h in item["headlines"]) or "—"
            paper = "<br>".join(h["paper"] for h in item["headlines"]) or "—"
            rows.append((item["item"], files, ours, paper, rep["notebook"]))
    ran = {rep["notebook"] for rep in reports}
    published = published_rows(out / "README.md") or published_rows(paths.ROOT / "figures" / "README.md")
    for name in REPORTING:
        if name not in ran:
            for item, paper in published.get(name) or [("—", "—")]:
                rows.append((item, "—", "not run yet", paper, name))
    rows.sort(key=lambda r: _item_key(r[0]))
    lines = ["# Figures and tables of the paper, regenerated", "",
             "Generated by `make figures` (`hearlib.paper.report`); do not edit by hand. Each paper item, the files",
             "that reproduce it, the notebook and settings it ran with, and the headline number beside the",
             "paper's. The paper's numbers are for LLaVA-1.5-7B unless stated; ours are for the model in the",
             "settings column (by default the project's model organism, a small LLaVA-architecture model",
             "trained on synthetic scenes), so agreement is expected in kind, not in value.", "",
             "| paper item | files | ours | paper | notebook |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    for rep in reports:
        for section in rep.get("sections", []):
            lines += ["", f"## {section['title']}", "", section["markdown"]]
    lines += ["", "## Notes where the organism disagrees with the paper", ""]
    for item in sorted((item for rep in reports for item in rep["items"]), key=lambda i: _item_key(i["item"])):
        for h in item["headlines"]:
            if h.get("note"):
                lines.append(f"- **{item['item']}** ({h['what']}): {h['note']}")
    lines += ["", "## Settings per notebook", "",
              "When each notebook last ran is in `.report/<notebook>.json` (not tracked), so this file",
              "changes only when results or settings do.", ""]
    seen = sorted({", ".join(f"{k} {v}" for k, v in sorted(rep["versions"].items()))
                   for rep in reports if rep.get("versions")})
    if seen:
        lines += [f"Library versions: {'; '.join(seen)} (the notebooks' kernel; each record's own, with "
                  "device, dtype, engine path and weight fingerprint, is in its `meta.json` under `environment`).", ""]
    for rep in reports:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(rep["settings"].items()))
        lines.append(f"- `{rep['notebook']}`: {settings}")
    for name in REPORTING:
        if name not in ran:
            lines.append(f"- `{name}`: not run yet")
    return "\n".join(lines) + "\n"


def write_results(out: str | Path = "figures") -> Path:
    """``<out>/RESULTS.md`` from every ``<out>/.report/*.json``; rewritten only if its text changes."""
    from hearlib.io import save_text_if_changed

    out = paths.under_root(out)
    path = out / "RESULTS.md"
    save_text_if_changed(path, results_text(out))
    return path


write_readme = write_results     # the earlier name; it never wrote the published README since RESULTS.md


def unpublished_reason(out: str | Path, profile: str = PUBLISHED_PROFILE, changed=(),
                       published: Path | None = None) -> str | None:
    """Why the run in ``out`` is not the published configuration (None when it is).

    ``changed`` names what the run set away from its defaults (``MODEL``, ``DATA``...), as the
    Makefile knows it; the reports' own settings are checked too, so stale reports from another
    configuration cannot be published."""
    from hearlib.paper.catalogue import REPORTING
    from hearlib.paper.plan import load_profile

    out = paths.under_root(out).resolve()
    published = (published or paths.ROOT / "figures").resolve()
    if out != published:
        return f"out is {out}, not the repository's {published}"
    if Path(str(profile)).stem != PUBLISHED_PROFILE:
        return f"profile {Path(str(profile)).stem}, not {PUBLISHED_PROFILE}"
    if changed:
        return f"{', '.join(changed)} set away from the defaults"
    reports = {rep["notebook"]: rep for rep in _reports(out)}
    missing = [name for name in REPORTING if name not in reports]
    if missing:
        return f"not every notebook has run ({', '.join(missing)} not yet)"
    model = Path(str(load_profile(PUBLISHED_PROFILE)["model"])).name
    for name in REPORTING:
        settings = reports[name].get("settings", {})
        if settings.get("profile") != PUBLISHED_PROFILE or settings.get("model") != model:
            return (f"{name} ran with profile={settings.get('profile')}, model={settings.get('model')} "
                    f"(published: {PUBLISHED_PROFILE}, {model})")
        if not str(settings.get("data", "")).split("-", 1)[-1].startswith("study-"):
            return f"{name} ran on {settings.get('data')}, not the generated study scenes"
    bad = missing_files(out)
    if bad:
        return f"{len(bad)} registered file(s) missing or empty"
    return None


def publish(out: str | Path = "figures", profile: str = PUBLISHED_PROFILE, changed=(),
            published: Path | None = None) -> tuple[bool, str]:
    """Copy ``<out>/RESULTS.md`` over the committed ``figures/README.md`` if the run is the
    published configuration; returns (whether it was rewritten, a one-line message)."""
    from hearlib.io import save_text_if_changed

    out = paths.under_root(out)
    results = write_results(out)
    reason = unpublished_reason(out, profile, changed, published)
    readme = (published or paths.ROOT / "figures") / "README.md"
    if reason:
        return False, f"{readme} left as is: {reason} (this run's results: {results})"
    changed_text = save_text_if_changed(readme, results.read_text(encoding="utf-8"))
    return changed_text, f"published {results} to {readme}" if changed_text else f"{readme} is up to date"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearlib.paper.report",
                                     description="results: regenerate <out>/RESULTS.md; publish: also copy it "
                                                 "over figures/README.md if the run is the published configuration")
    parser.add_argument("action", nargs="?", default="results", choices=("results", "publish"))
    parser.add_argument("--out", default=str(paths.FIGURES), help="figures folder (default: %(default)s)")
    parser.add_argument("--profile", default=PUBLISHED_PROFILE, help="the run's profile (publish)")
    parser.add_argument("--changed", action="append", default=[], metavar="WHAT",
                        help="a setting the run changed from its default, e.g. MODEL (publish; repeatable)")
    args = parser.parse_args(argv)
    if args.action == "publish":
        _, message = publish(args.out, args.profile, args.changed)
        print(message)
        return 0
    before = (paths.under_root(args.out) / "RESULTS.md")
    before = before.read_bytes() if before.is_file() else None
    results = write_results(args.out)
    print(f"{results} is up to date" if results.read_bytes() == before else f"wrote {results}")
    bad = missing_files(args.out)
    if bad:
        print(f"error: {len(bad)} registered file(s) missing or empty: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
