"""``make site``: a static HTML report of the executed notebooks, to browse without running anything.

The notebooks that ``make figures`` (its render step, :mod:`hearlib.paper.catalogue`) executed with
papermill into ``build/notebooks/<profile>/`` are converted to HTML pages with nbconvert's
JupyterLab template, figures embedded; ``index.html`` lists them in the catalogue's order, each with
its title, its first paragraph, its first figure and when it ran, and shows the results table
(``<figures>/RESULTS.md`` of the same run where it exists, else the published ``figures/README.md``),
its links pointing at copies of the figure files that exist.

The pages load nothing from the network (no MathJax, require.js or widget scripts; the notebooks'
markdown has no TeX), so the folder opens from disk (``build/site/index.html``) or from any static
file server. ``python -m hearlib.paper.site --notebooks build/notebooks/quick --out build/site``.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hearlib import paths
from hearlib.errors import UserError

__all__ = ["Page", "executed_notebooks", "build_site", "main"]

# nbconvert's lab template without the scripts it fetches from a CDN, and with a line of navigation
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style>
nav.hearlib-site { font: 14px/1.5 system-ui, sans-serif; padding: 8px 16px; margin-bottom: 8px;
  border-bottom: 1px solid #ddd; background: #f7f7f7; }
nav.hearlib-site a { margin-right: 1.2em; }
nav.hearlib-site span { color: #555; }
details.hearlib-code > summary { font: 12px/1.6 system-ui, sans-serif; color: #777; cursor: pointer;
  padding-left: 8px; }
</style>{%- endblock extra_css -%}
{%- block input_group -%}
<details class="hearlib-code"><summary>{{ "parameters of this run" if "injected-parameters" in cell.metadata.get("tags", [])
  else "code" }}</summary>
{{ super() }}
</details>
{%- endblock input_group -%}
{%- block body_header -%}{{ super() }}
<nav class="hearlib-site">{{ resources.hearlib_nav }}</nav>
{%- endblock body_header -%}
"""

INDEX_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 24px auto; padding: 0 16px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
.lead { color: #444; }
ol.notebooks { list-style: none; padding: 0; }
ol.notebooks li { display: flex; gap: 16px; border-top: 1px solid #ddd; padding: 12px 0; }
ol.notebooks img { width: 220px; height: auto; border: 1px solid #eee; flex: none; }
ol.notebooks .thumb-none { width: 220px; flex: none; color: #888; font-size: 0.9em; }
ol.notebooks h2 { font-size: 1.1em; margin: 0 0 4px 0; }
.meta { color: #666; font-size: 0.9em; }
.failed { color: #b00; font-weight: bold; }
.results table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0 16px 0; }
.results th, .results td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }
.results th { background: #f3f3f3; }
code { font-size: 0.92em; background: #f3f3f3; padding: 0 3px; }
a.anchor-link { display: none; }
"""


@dataclass
class Page:
    """One executed notebook and what the index says about it."""

    name: str
    source: Path
    title: str
    summary: str
    figures: int
    first_png: bytes | None
    ran: str              # "executed <UTC time>, <seconds> s", or "" without papermill metadata
    failed: str           # papermill's exception, or ""


def _title_and_summary(nb) -> tuple[str, str]:
    """The first markdown cell's ``# heading`` and the paragraph after it."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            rest = "\n".join(lines[1:]).strip().split("\n\n")[0]
            return lines[0][2:].strip(), " ".join(rest.split())
    return "", ""


def _is_executed(nb) -> bool:
    return any(cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
               for cell in nb.cells)


def executed_notebooks(folder: Path) -> list[Path]:
    """The executed notebooks in ``folder``: the catalogue's order first, then any others by name;
    papermill's unfinished ``*.running.ipynb`` and notebooks without outputs are left out."""
    import nbformat

    from hearlib.paper.catalogue import NOTEBOOKS

    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = {p.stem: p for p in folder.glob("*.ipynb") if not p.stem.endswith(".running")}
    order = [n for n in NOTEBOOKS if n in found] + sorted(set(found) - set(NOTEBOOKS))
    return [found[n] for n in order if _is_executed(nbformat.read(str(found[n]), as_version=4))]


def _page(path: Path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    title, summary = _title_and_summary(nb)
    pngs = [output["data"]["image/png"] for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    first = base64.b64decode("".join(pngs[0])) if pngs else None
    pm = nb.metadata.get("papermill", {})
    ran = ""
    if pm.get("end_time"):
        when = pm["end_time"][:16].replace("T", " ")
        ran = f"executed {when} UTC" + (f", {pm['duration']:.0f} s" if pm.get("duration") is not None else "")
    failed = str(pm.get("exception") or "")
    page = Page(path.stem, path, title or path.stem, summary, len(pngs), first, ran, failed)
    return nb, page


def _prose_first(nb) -> None:
    """Where papermill injected parameters, drop the notebook's own defaults cell, so a page shows the
    parameters once (the injected cell, folded like every code cell by the template)."""
    tags = [cell.metadata.get("tags", []) for cell in nb.cells]
    if any("injected-parameters" in t for t in tags):
        nb.cells = [cell for cell, t in zip(nb.cells, tags) if "parameters" not in t]


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="hearlib_site.html.j2",
                        extra_loaders=[jinja2.DictLoader({"hearlib_site.html.j2": TEMPLATE})])


def _link(page: Page | None, text: str) -> str:
    return f'<a href="{page.name}.html">{text}</a>' if page else ""


def _results_html(results: Path, figures: Path, out: Path) -> str:
    """The results markdown as HTML; its relative links point at copies (under ``out/figures/``) of
    the files that exist in ``figures``, and become plain text where the file does not exist."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    body = markdown2html_mistune(results.read_text(encoding="utf-8"))
    body = re.sub(r"<h1[^>]*>.*?</h1>", "", body, count=1, flags=re.S)      # the index has its own heading

    def relink(match: re.Match) -> str:
        href, text = html.unescape(match.group(1)), match.group(2)
        if re.match(r"[a-z]+:|#|/", href):
            return match.group(0)
        target = figures / href.split("#")[0]
        if not target.is_file():
            return text
        (out / "figures").mkdir(exist_ok=True)
        shutil.copy2(target, out / "figures" / target.name)
        return f'<a href="figures/{html.escape(target.name)}">{text}</a>'

    return re.sub(r'<a href="([^"]*)">(.*?)</a>', relink, body, flags=re.S)


def _inline_markdown(text: str) -> str:
    """One paragraph of markdown as inline HTML (the notebooks' summaries use `code` and *emphasis*)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return re.sub(r"^<p>|</p>\s*$", "", markdown2html_mistune(text).strip())


def _index(pages: list[Page], notebooks: Path, results: Path | None, results_note: str, results_body: str,
           built: str) -> str:
    items = []
    for page in pages:
        thumb = (f'<a href="{page.name}.html"><img src="img/{page.name}.png" alt="first figure of {page.name}"></a>'
                 if page.first_png else '<div class="thumb-none">no figure</div>')
        meta = ", ".join(x for x in (f"{page.figures} figure{'s' if page.figures != 1 else ''}", page.ran) if x)
        failed = f' <span class="failed">stopped with {html.escape(page.failed)}</span>' if page.failed else ""
        items.append(f'<li>{thumb}<div><h2><a href="{page.name}.html">{html.escape(page.title)}</a></h2>'
                     f'<div>{_inline_markdown(page.summary)}</div><div class="meta"><code>{page.name}</code> · '
                     f'{html.escape(meta)}{failed}</div></div></li>')
    results_part = ""
    if results is not None:
        results_part = (f'<h2 id="results">Results</h2><p class="meta">{results_note}</p>'
                        f'<div class="results">{results_body}</div>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>hearlib: the executed notebooks</title><style>{INDEX_CSS}</style></head>
<body><main>
<h1>hearlib: the executed notebooks</h1>
<p class="lead">Head attribution (HeAr) for image-to-text information flow in vision-language models:
each notebook below redraws figures and tables of the paper from the records <code>hearlib run</code> collected.
These pages are the notebooks as <code>make figures</code> executed them ({len(pages)} from
<code>{html.escape(str(notebooks))}</code>); nothing runs in the browser.
{'<a href="#results">Results</a> below lists each item beside the paper&#39;s number.' if results else ''}</p>
<ol class="notebooks">{''.join(items)}</ol>
{results_part}
<p class="meta">Built by <code>make site</code> (<code>hearlib.paper.site</code>) on {built}.</p>
</main></body></html>
"""


def build_site(notebooks: str | Path, out: str | Path, figures: str | Path | None = None) -> list[Page]:
    """Write the site for the executed notebooks in ``notebooks`` into ``out`` (replaced whole);
    returns the pages. Raises :class:`UserError` where there is no executed notebook."""
    notebooks, out = paths.under_root(notebooks), paths.under_root(out)
    figures = paths.under_root(figures) if figures is not None else paths.FIGURES
    found = executed_notebooks(notebooks)
    if not found:
        raise UserError(f"no executed notebooks in {notebooks}: run `make figures` (or `make render` after "
                        "`make collect`) first; `make site PROFILE=...` picks build/notebooks/<profile>/")
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "img").mkdir(parents=True)
    loaded = [_page(path) for path in found]
    pages = [page for _, page in loaded]
    exporter = _exporter()
    for i, (nb, page) in enumerate(loaded):
        nb.metadata["title"] = page.title
        _prose_first(nb)
        previous = pages[i - 1] if i > 0 else None
        following = pages[i + 1] if i + 1 < len(pages) else None
        nav = " ".join(x for x in ('<a href="index.html">all notebooks</a>', _link(previous, "← previous"),
                                    _link(following, "next →"),
                                    f"<span>{html.escape(page.name)}{', ' + page.ran if page.ran else ''}</span>")
                       if x)
        body, _ = exporter.from_notebook_node(nb, resources={"hearlib_nav": nav, "metadata": {"name": page.name}})
        (staging / f"{page.name}.html").write_text(body, encoding="utf-8")
        if page.first_png:
            (staging / "img" / f"{page.name}.png").write_bytes(page.first_png)
    results, note, body = None, "", ""
    own, published = figures / "RESULTS.md", paths.ROOT / "figures" / "README.md"
    shown = own.relative_to(paths.ROOT) if own.is_relative_to(paths.ROOT) else own
    if own.is_file():
        results, note = own, f"This run's results, <code>{html.escape(str(shown))}</code>."
    elif published.is_file():
        results = published
        note = (f"The published results, <code>figures/README.md</code> (quick profile); this run's own "
                f"<code>{html.escape(str(shown))}</code> was not found, so its numbers may differ from the pages'.")
    if results is not None:
        body = _results_html(results, results.parent, staging)
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (staging / "index.html").write_text(_index(pages, notebooks.relative_to(paths.ROOT)
                                               if notebooks.is_relative_to(paths.ROOT) else notebooks,
                                               results, note, body, built), encoding="utf-8")
    (staging / "pages.json").write_text(json.dumps(
        [{"name": p.name, "title": p.title, "figures": p.figures, "ran": p.ran, "failed": p.failed} for p in pages],
        indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearlib.paper.site",
                                     description="A static HTML report of the executed notebooks (make site).")
    parser.add_argument("--notebooks", type=Path, default=paths.BUILD / "notebooks" / "quick",
                        help="folder of executed notebooks (default: build/notebooks/quick, what make figures writes)")
    parser.add_argument("--figures", type=Path, default=None,
                        help="the run's figures folder, for RESULTS.md and the files it links (default: figures/)")
    parser.add_argument("--out", type=Path, default=paths.BUILD / "site", help="output folder (default: build/site)")
    args = parser.parse_args(argv)
    try:
        pages = build_site(args.notebooks, args.out, args.figures)
    except UserError as error:
        print(f"make site: {error}", file=sys.stderr)
        return 2
    out = paths.under_root(args.out)
    print(f"make site: {len(pages)} notebooks -> {out / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
