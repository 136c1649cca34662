"""hearlib.paper.report: every paper item's files, its headline beside the paper's, and a check that
nothing registered is missing or empty."""
from __future__ import annotations

import json
import os

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hearlib.paper.report import Report, main, missing_files, publish, write_results  # noqa: E402
from hearlib.paper.catalogue import REPORTING as NOTEBOOKS  # noqa: E402  (the notebooks that write reports)
from hearlib import paths  # noqa: E402


def _report(out):
    report = Report("02_head_attribution", out, {"profile": "ci", "n_masks": 120})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    report.figure(fig, "fig2_attribution_example", "Fig. 2")
    report.table(pd.DataFrame({"model": ["s"], "R2": [0.59]}), "table2_attribution_fit", "Table 2", "caption")
    report.headline("Table 2", "R² (held-out)", "0.59", "0.82", "The organism's fit is weaker.", verdict="weaker")
    report.headline("Table 10", "sorts after Table 2", "1", "1")
    return report


def test_files_readme_and_order(tmp_path):
    _report(tmp_path)
    for name in ("fig2_attribution_example.png", "fig2_attribution_example.pdf", "table2_attribution_fit.csv",
                 "table2_attribution_fit.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "table2_attribution_fit.csv").read_text() == "model,R2\ns,0.59\n"
    assert (tmp_path / "table2_attribution_fit.md").read_text().startswith("caption\n\n| model | R2 |")
    text = write_results(tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| Fig.") or line.startswith("| Table")]
    rows = [r for r in rows if r.rstrip(" |").endswith("02_head_attribution") and "not run yet" not in r]
    assert [r.split("|")[1].strip() for r in rows] == ["Fig. 2", "Table 2", "Table 10"]
    assert "R² (held-out): **0.59** (weaker) | 0.82" in rows[1]
    assert "- **Table 2** (R² (held-out)): The organism's fit is weaker." in text
    assert "`02_head_attribution`" in text and "n_masks=120" in text
    assert not list(tmp_path.rglob(".tmp-*")), "temporary files are renamed or removed"


def test_missing_or_empty_files_fail_the_build(tmp_path, capsys):
    _report(tmp_path)
    assert missing_files(tmp_path) == [] and main(["--out", str(tmp_path)]) == 0
    (tmp_path / "fig2_attribution_example.pdf").write_bytes(b"")
    (tmp_path / "table2_attribution_fit.md").unlink()
    assert missing_files(tmp_path) == ["fig2_attribution_example.pdf", "table2_attribution_fit.md"]
    assert main(["--out", str(tmp_path)]) == 1
    assert "2 registered file(s) missing or empty" in capsys.readouterr().err


def test_readme_is_rewritten_only_when_results_change(tmp_path):
    """A rerun with the same results leaves RESULTS.md untouched (no spurious rewrites)."""
    _report(tmp_path)
    readme = write_results(tmp_path)
    first = readme.read_bytes()
    old = 1_000_000_000
    os.utime(readme, (old, old))
    _report(tmp_path)               # the same results again (a new run time in .report/)
    assert main(["--out", str(tmp_path)]) == 0
    assert readme.read_bytes() == first and readme.stat().st_mtime == old
    written = json.loads((tmp_path / ".report" / "02_head_attribution.json").read_text())["written"]
    assert written[:10] not in first.decode(), "the run date stays out of the tracked file"
    Report("02_head_attribution", tmp_path, {"profile": "ci", "n_masks": 120}).headline(
        "Table 2", "R² (held-out)", "0.61", "0.82")
    write_results(tmp_path)
    assert readme.stat().st_mtime != old and "**0.61**" in readme.read_text()


# --------------------------------------------------------------- generated RESULTS.md vs published README

def _published_copy(tmp_path):
    """A copy of the committed figures/README.md in a temp 'repository figures/' folder."""
    figures = tmp_path / "figures"
    figures.mkdir()
    committed = (paths.ROOT / "figures" / "README.md").read_bytes()
    (figures / "README.md").write_bytes(committed)
    return figures, committed


def _table_rows(text):
    """The rows of the items' table (the sections after it, such as the organisms', have their own)."""
    table = text.split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| paper item")
            and not line.startswith("| ---")]


def _run_notebook(out, name, profile="quick", model="hear-organism-s", data="coco-study-400"):
    report = Report(name, out, {"profile": profile, "model": model, "data": data})
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    report.figure(fig, f"{name}_fig", f"Fig. {list(NOTEBOOKS).index(name) + 1}")
    report.headline(f"Fig. {list(NOTEBOOKS).index(name) + 1}", "x", "1", "2")
    return report


def test_one_notebook_by_hand_keeps_every_published_row(tmp_path):
    figures, committed = _published_copy(tmp_path)
    first = next(iter(NOTEBOOKS))
    _run_notebook(figures, first).write_readme()          # what a notebook's last cell calls
    assert (figures / "README.md").read_bytes() == committed
    results = (figures / "RESULTS.md").read_text()
    published = _table_rows(committed.decode())
    # every published item of the notebooks that did not run is still listed, marked not run yet
    others = [r for r in published if r.rstrip(" |").rsplit("|", 1)[-1].strip() != first]
    assert others, "the committed README lists the other notebooks' items"
    for row in others:
        item, notebook = row.split("|")[1].strip(), row.rstrip(" |").rsplit("|", 1)[-1].strip()
        assert any(r.split("|")[1].strip() == item and r.rstrip(" |").endswith(notebook) and "not run yet" in r
                   for r in _table_rows(results)), (item, notebook)
    assert f"`{first}`: " in results and "not run yet" not in [r for r in _table_rows(results) if first in r][0]


def test_without_a_published_readme_each_missing_notebook_gets_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ROOT", tmp_path)        # no committed README to take items from
    _run_notebook(tmp_path / "out", "01_head_ablation")
    rows = _table_rows(write_results(tmp_path / "out").read_text())
    assert len(rows) == 1 + len(NOTEBOOKS) - 1
    assert {r.rstrip(" |").rsplit("|", 1)[-1].strip() for r in rows if "not run yet" in r} == set(NOTEBOOKS) - {
        "01_head_ablation"}


def test_publish_only_the_published_configuration(tmp_path, capsys):
    figures, committed = _published_copy(tmp_path)
    for name in NOTEBOOKS:                                   # a complete ci run into the repository's figures/
        _run_notebook(figures, name, profile="ci")
    rewritten, message = publish(figures, "ci", published=figures)
    assert not rewritten and "left as is: profile ci" in message
    assert (figures / "README.md").read_bytes() == committed and (figures / "RESULTS.md").is_file()
    # the same quick-profile reports but another out folder, a changed MODEL, or a missing notebook
    other = tmp_path / "other"
    for name in NOTEBOOKS:
        _run_notebook(figures, name)
        _run_notebook(other, name)
    assert "not the repository's" in publish(other, "quick", published=figures)[1]
    assert "MODEL set away" in publish(figures, "quick", ["MODEL"], published=figures)[1]
    (figures / ".report" / f"{list(NOTEBOOKS)[-1]}.json").rename(tmp_path / "aside.json")
    assert "not every notebook has run" in publish(figures, "quick", published=figures)[1]
    _run_notebook(figures, list(NOTEBOOKS)[-1], model="hear-organism-m")
    assert "model=hear-organism-m" in publish(figures, "quick", published=figures)[1]
    _run_notebook(figures, list(NOTEBOOKS)[-1], data="coco-my-photos")
    assert "not the generated study scenes" in publish(figures, "quick", published=figures)[1]
    assert (figures / "README.md").read_bytes() == committed
    # the published configuration: RESULTS.md becomes the README, byte for byte
    _run_notebook(figures, list(NOTEBOOKS)[-1])
    rewritten, message = publish(figures, "quick", published=figures)
    assert rewritten and message.startswith("published")
    assert (figures / "README.md").read_bytes() == (figures / "RESULTS.md").read_bytes() != committed
    assert "not run yet" not in (figures / "README.md").read_text()


def test_publish_step_of_a_ci_render_leaves_the_committed_readme(tmp_path, capsys):
    """`make figures PROFILE=ci` on a fresh clone: its last step (report, then publish) on a ci
    .report folder leaves the repository's figures/README.md byte-identical."""
    readme = paths.ROOT / "figures" / "README.md"
    committed = readme.read_bytes()
    out = tmp_path / "figures-ci"
    for name in NOTEBOOKS:
        _run_notebook(out, name, profile="ci")
    assert main(["--out", str(out)]) == 0
    assert main(["publish", "--out", str(out), "--profile", "ci"]) == 0
    assert "left as is" in capsys.readouterr().out
    assert readme.read_bytes() == committed


def test_in_a_kernel_figures_and_tables_show_inline_and_progress_is_a_widget(tmp_path):
    """What JupyterLab and papermill see: the saved PNG itself as an image output, the table as an
    HTML table, and tqdm.auto's bar as one ipywidget (no stderr text)."""
    import base64

    import nbclient
    import nbformat

    out = tmp_path / "figures"
    code = f"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt, pandas as pd
from tqdm.auto import tqdm
from hearlib.paper.report import Report
report = Report("nb", {str(out)!r}, {{}})
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
report.figure(fig, "f", "Fig. 1")
report.table(pd.DataFrame({{"model": ["s"], "R2": [0.5]}}), "t", "Table 1", "caption")
for _ in tqdm(range(3), desc="loop"):
    pass
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(paths.ROOT)}}).execute()
    outputs = nb.cells[0].outputs
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    tables = [o for o in outputs if "<table" in o.get("data", {}).get("text/html", "")]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(images) == 1 and base64.b64decode(images[0]["data"]["image/png"]) == (out / "f.png").read_bytes()
    assert len(tables) == 1 and "R2" in tables[0]["data"]["text/html"]
    assert images[0]["metadata"]["hearlib"] == {"item": "Fig. 1", "name": "f.png"}
    assert tables[0]["metadata"]["hearlib"] == {"item": "Table 1", "name": "t.csv"}
    assert len(widgets) == 1, [o.get("data", o).keys() for o in outputs]
    assert not [o for o in outputs if o.get("name") == "stderr"], "no progress text on stderr"


def test_outside_a_kernel_nothing_is_displayed(tmp_path, capsys):
    from hearlib.paper.report import in_kernel

    assert not in_kernel()
    _report(tmp_path)
    assert "Figure" not in capsys.readouterr().out


def test_render_check_finds_a_registered_figure_missing_from_the_executed_notebook(tmp_path):
    """hearlib.paper.render.render fails when an executed notebook lacks a registered item inline."""
    import nbformat
    import pytest

    from hearlib.errors import UserError
    from hearlib.paper.render import _check_inline, inline_files

    _report(tmp_path)                        # registers fig2_attribution_example.png and table2_attribution_fit.csv
    image = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="},
                                   metadata={"hearlib": {"item": "Fig. 2", "name": "fig2_attribution_example.png"}})
    table = nbformat.v4.new_output("display_data", data={"text/html": "<table></table>", "text/plain": "t"},
                                   metadata={"hearlib": {"item": "Table 2", "name": "table2_attribution_fit.csv"}})
    untagged = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})
    path = tmp_path / "02_head_attribution.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[image, untagged])]), path)
    assert inline_files(path) == {"fig2_attribution_example.png"}
    with pytest.raises(UserError, match="table2_attribution_fit.csv"):
        _check_inline(path, "02_head_attribution", tmp_path)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[image, table])]), path)
    _check_inline(path, "02_head_attribution", tmp_path)


def test_a_section_is_its_own_part_of_the_results_before_the_notes(tmp_path):
    report = _report(tmp_path)
    other = Report("10_organisms", tmp_path, {"profile": "ci"})
    other.section("The organisms side by side", "| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    other.section("The organisms side by side", "| a | b |\n| --- | --- |\n| 3 | 4 |\n")    # replaced, not repeated
    report.write_results()
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count("## The organisms side by side") == 1
    assert "## The organisms side by side\n\n| a | b |\n| --- | --- |\n| 3 | 4 |\n" in text
    assert text.index("## The organisms side by side") < text.index("## Notes where the organism disagrees")


def test_a_placeholder_figure_fails_unless_the_notebook_says_why(tmp_path):
    import json

    from hearlib.paper.plotting import message_figure
    from hearlib.paper.report import Report

    report = Report("99_test", tmp_path)
    with pytest.raises(ValueError, match="placeholder"):
        report.figure(message_figure("nothing to show"), "empty", "Fig. 99")
    assert not (tmp_path / "empty.png").exists()
    report.figure(message_figure("no head above 0.1"), "empty", "Fig. 99", why="no head has θ > 0.1 in any sample")
    saved = json.loads((tmp_path / ".report" / "99_test.json").read_text())
    assert saved["items"][0]["placeholders"] == [{"file": "empty.png", "why": "no head has θ > 0.1 in any sample"}]


def test_a_headline_carries_one_of_the_verdicts_and_reads_as_a_sentence(tmp_path, capsys):
    from hearlib.paper.report import VERDICTS, verdict_sentence

    report = Report("01_head_ablation", tmp_path, {"profile": "ci"})
    with pytest.raises(ValueError, match="agrees, weaker, disagrees"):
        report.headline("Fig. 7", "share", "40%", "80%", verdict="roughly")
    report.headline("Fig. 7", "share of samples", "40% of 6 samples", "80%", "Single heads matter more.",
                    verdict="disagrees")
    assert capsys.readouterr().out.strip() == ("Fig. 7 · disagrees. share of samples: 40% of 6 samples (paper: 80%). "
                                               "Single heads matter more.")
    assert verdict_sentence("Fig. 8", {"what": "w", "value": "1", "paper": "2"}) == "**Fig. 8.** w: 1 (paper: 2)."
    assert VERDICTS == ("agrees", "weaker", "disagrees", "beyond the paper")
