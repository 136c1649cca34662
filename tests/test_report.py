"""hearlib.report: every paper item's files, its headline beside the paper's, and a check that
nothing registered is missing or empty."""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hearlib.report import Report, main, missing_files, write_readme  # noqa: E402


def _report(out):
    report = Report("02_head_attribution", out, {"profile": "ci", "n_masks": 120})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    report.figure(fig, "fig2_attribution_example", "Fig. 2")
    report.table(pd.DataFrame({"model": ["s"], "R2": [0.59]}), "table2_attribution_fit", "Table 2", "caption")
    report.headline("Table 2", "R² (held-out)", "0.59", "0.82", "The organism's fit is weaker.")
    report.headline("Table 10", "sorts after Table 2", "1", "1")
    return report


def test_files_readme_and_order(tmp_path):
    _report(tmp_path)
    for name in ("fig2_attribution_example.png", "fig2_attribution_example.pdf", "table2_attribution_fit.csv",
                 "table2_attribution_fit.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "table2_attribution_fit.csv").read_text() == "model,R2\ns,0.59\n"
    assert (tmp_path / "table2_attribution_fit.md").read_text().startswith("caption\n\n| model | R2 |")
    text = write_readme(tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| Fig.") or line.startswith("| Table")]
    assert [r.split("|")[1].strip() for r in rows] == ["Fig. 2", "Table 2", "Table 10"]
    assert "R² (held-out): **0.59** | 0.82" in rows[1]
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
    """figures/README.md is tracked in git: a rerun with the same results leaves it untouched."""
    _report(tmp_path)
    readme = write_readme(tmp_path)
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
    write_readme(tmp_path)
    assert readme.stat().st_mtime != old and "**0.61**" in readme.read_text()
