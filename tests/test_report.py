"""hearlib.report: every paper item's files, its headline beside the paper's, and a check that
nothing registered is missing or empty."""
from __future__ import annotations

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
    assert not list(tmp_path.glob(".*.tmp")), "writes go through a temporary file"


def test_missing_or_empty_files_fail_the_build(tmp_path, capsys):
    _report(tmp_path)
    assert missing_files(tmp_path) == [] and main(["--out", str(tmp_path)]) == 0
    (tmp_path / "fig2_attribution_example.pdf").write_bytes(b"")
    (tmp_path / "table2_attribution_fit.md").unlink()
    assert missing_files(tmp_path) == ["fig2_attribution_example.pdf", "table2_attribution_fit.md"]
    assert main(["--out", str(tmp_path)]) == 1
    assert "2 registered file(s) missing or empty" in capsys.readouterr().err
