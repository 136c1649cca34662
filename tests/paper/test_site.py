"""hearlib.paper.site (make site): executed notebooks become static pages and an index, offline."""
from __future__ import annotations

import base64
import io

import nbformat
import pytest
from PIL import Image

from hearlib.errors import UserError
from hearlib.paper.site import build_site, executed_notebooks


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _notebook(folder, name, title, executed=True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat the {name} notebook shows.\n\nMore."),
                nbformat.v4.new_code_cell("plot()")]
    if executed:
        nb.cells[1].execution_count = 1
        nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png()})]
        nb.metadata["papermill"] = {"end_time": "2026-12-06T10:00:00", "duration": 12.0}
    nbformat.write(nb, str(folder / f"{name}.ipynb"))


def test_the_site_lists_executed_notebooks_in_catalogue_order(tmp_path):
    notebooks, out = tmp_path / "nb", tmp_path / "site"
    notebooks.mkdir()
    _notebook(notebooks, "03_validation", "03 · Validation")
    _notebook(notebooks, "01_head_ablation", "01 · Head ablation")
    _notebook(notebooks, "02_head_attribution", "02 · not run", executed=False)
    pages = build_site(notebooks, out, figures=tmp_path / "figures")
    assert [p.name for p in pages] == ["01_head_ablation", "03_validation"]
    assert [p.title for p in pages] == ["01 · Head ablation", "03 · Validation"]
    assert pages[0].summary == "What the 01_head_ablation notebook shows." and pages[0].figures == 1
    assert pages[0].ran == "executed 2026-12-06 10:00 UTC, 12 s"
    index = (out / "index.html").read_text()
    assert index.index("01 · Head ablation") < index.index("03 · Validation") and "02 · not run" not in index
    page = (out / "03_validation.html").read_text()
    assert "data:image/png;base64" in page and 'href="01_head_ablation.html"' in page
    assert (out / "img" / "01_head_ablation.png").read_bytes() == base64.b64decode(_png())
    assert "<script src=" not in page + index          # nothing fetched from the network


def test_a_page_folds_its_code_and_shows_the_parameters_once(tmp_path):
    notebooks, out = tmp_path / "nb", tmp_path / "site"
    notebooks.mkdir()
    _notebook(notebooks, "01_head_ablation", "01 · Head ablation")
    nb = nbformat.read(str(notebooks / "01_head_ablation.ipynb"), as_version=4)
    defaults = nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('profile = "ci"', metadata={"tags": ["injected-parameters"]})
    nb.cells[1:1] = [defaults, injected]
    nbformat.write(nb, str(notebooks / "01_head_ablation.ipynb"))
    build_site(notebooks, out, figures=tmp_path / "figures")
    page = (out / "01_head_ablation.html").read_text()
    assert "ci" in page and "quick" not in page                      # the injected values, once
    assert page.count('<details class="hearlib-code">') == 2          # the injected cell and plot(), folded
    assert page.index("What the 01_head_ablation notebook shows.") < page.index("<details class=\"hearlib-code\">")
    assert "<summary>parameters of this run</summary>" in page and "<summary>code</summary>" in page


def test_no_executed_notebook_is_a_clear_error(tmp_path):
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb", "01_head_ablation", "01", executed=False)
    assert executed_notebooks(tmp_path / "nb") == []
    with pytest.raises(UserError, match="make figures"):
        build_site(tmp_path / "nb", tmp_path / "site")
