"""Every notebook of :data:`hearlib.paper.catalogue.NOTEBOOKS` run in a real JupyterLab, driven by headless
Chromium (``make test-browser``; collected only with ``pytest --browser``).

Per notebook: double-click its ``.py`` in the file browser (it must open as a notebook, through the
project's jupytext default-viewer setting), Run > Run All Cells, wait for the kernel to be idle,
then check that no cell shows an error, that every figure and table the notebook registered in
``<out>/.report/<notebook>.json`` is displayed inline (PNG images and HTML tables counted in the
notebook model and in the page), that no stderr wall of progress text appears, and that notebooks
with interactive ipywidgets respond to one interaction. Screenshots go to ``build/browser/``.

By default the notebooks run with their own defaults (what a user gets after ``make figures``),
read-only: a record missing from the store fails the notebook instead of computing it.
``--browser-profile ci`` runs throwaway copies with the ci profile's parameters injected
(``--browser-param data ...``) for quick development runs against a ci store.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.request
from pathlib import Path

import pytest

from hearlib import paths
from hearlib.paper.catalogue import EXPLORERS, ITEMS, NOTEBOOKS

pytestmark = pytest.mark.browser

SHOTS = paths.ROOT / "build" / "browser"
PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+/\d+ \[\d+:\d+")      # tqdm's text bar
# test-only JupyterLab settings: no autosave (the test must not rewrite notebooks/), every cell in the DOM
TEST_OVERRIDES = {"@jupyterlab/docmanager-extension:plugin": {"autosave": False},
                  "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_root(config) -> Path:
    """notebooks/ itself, or (``--browser-profile``) copies with that profile's parameters injected."""
    profile = config.getoption("--browser-profile")
    if not profile:
        store = paths.STORE / "study"
        if not store.is_dir() or not any(store.iterdir()):
            pytest.fail(f"the store {store} is empty: the notebooks run with their own defaults, so run "
                        "`make collect` (or `make figures`) first; `make test-browser` does")
        return paths.NOTEBOOKS
    import jupytext

    from hearlib.paper.render import render

    overrides = {name: value for name, value in config.getoption("--browser-param")}
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in overrides.items()}
    folder = SHOTS / f"lab-{Path(profile).stem}"
    shutil.rmtree(folder, ignore_errors=True)
    prepared = render(profile, overrides, folder / "ipynb", read_only=False, prepare_only=True)
    for path in prepared:
        notebook = jupytext.read(path)
        notebook.metadata.get("jupytext", {}).pop("formats", None)        # no .ipynb pair next to the copy
        jupytext.write(notebook, folder / f"{path.stem}.py", fmt="py:percent")
    shutil.rmtree(folder / "ipynb")
    return folder


@pytest.fixture(scope="module")
def lab(request):
    """A JupyterLab server on a free localhost port, with the project's configuration."""
    root = _lab_root(request.config)
    port, token = _free_port(), uuid.uuid4().hex
    config = Path(tempfile.mkdtemp(prefix="hearlib-lab-config-"))
    (config / "labconfig").mkdir()
    (config / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(TEST_OVERRIDES))
    home = Path(tempfile.mkdtemp(prefix="hearlib-lab-home-"))
    env = {**os.environ,
           "JUPYTER_CONFIG_PATH": os.pathsep.join([str(config), str(paths.ROOT / "jupyter")]),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "ws"),
           "PYTHONPATH": os.pathsep.join([str(paths.ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HEARLIB_READ_ONLY": "1"}
    env.pop("MPLBACKEND", None)              # conftest's Agg: the kernels get what a user's would
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--notebook-dir={root}", "--expose-app-in-browser",
           "--ServerApp.port_retries=0"]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS / "jupyterlab.log", "w")
    server = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start; see {SHOTS / 'jupyterlab.log'}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "root": root}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(config, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def page(lab, open_page):
    """JupyterLab open in the session's Chromium (tests/browser/conftest.py)."""
    page = open_page(1500, 1200)
    page.goto(f"{lab['url']}/lab?token={lab['token']}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=120_000)
    page.locator(".jp-DirListing-item").first.wait_for()
    yield page
    page.close()


STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.widgets) return null;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return {kernel: kernel ? kernel.status : null, path: w.context.path, total: cells.length,
          running: cells.filter(c => (c.promptNode && c.promptNode.textContent || '').includes('*')).length,
          executed: cells.filter(c => c.model.executionCount !== null).length,
          viewer: w.constructor.name};
}"""


def _wait_idle(page, timeout: float) -> dict:
    """Poll until the kernel is idle with no cell queued or running (twice in a row)."""
    deadline, calm = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        if state and state["kernel"] == "idle" and state["running"] == 0:
            calm += 1
            if calm >= 3:
                return state
        else:
            calm = 0
        time.sleep(1)
    raise AssertionError(f"the notebook did not finish within {timeout:.0f} s: {page.evaluate(STATE_JS)}")


def _accept_kernel_dialog(page) -> None:
    """A notebook without kernelspec metadata asks for a kernel: take the preselected one (the venv's)."""
    dialog = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    try:
        dialog.first.wait_for(timeout=3000)
    except Exception:                                           # no dialog: the kernel starts by itself
        return
    dialog.first.click()


def _outputs(page) -> list[dict]:
    notebook = page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.toJSON()")
    return [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]


def _expected(out: Path, name: str, since: float) -> tuple[list[str], list[str]]:
    """Figures (PNG) and tables (CSV) the notebook registered in this run, and its items."""
    if name in EXPLORERS:          # draws no paper item, registers nothing
        return [], []
    file = out / ".report" / f"{name}.json"
    assert file.is_file() and file.stat().st_mtime >= since, f"{name} wrote no report in {out} during this run"
    items = json.loads(file.read_text())["items"]
    files = [f for item in items for f in item["files"]]
    return [f for f in files if f.endswith((".png", ".csv"))], [i["item"] for i in items]


def _out_folder(root: Path, name: str) -> Path:
    """Where the notebook writes: ``out`` of its profile and overrides (the injected cell, the last one,
    wins), resolved as :func:`hearlib.paper.notebook.open_notebook` resolves it."""
    import ast

    from hearlib.paper.notebook import notebook_params
    from hearlib.paths import under_root as resolve_path

    text = (root / f"{name}.py").read_text()
    profile = ast.literal_eval(re.findall(r"^profile = (.+?)(?:\s+#.*)?$", text, flags=re.M)[-1])
    overrides = ast.literal_eval(re.findall(r"^overrides = (.+?)(?:\s+#.*)?$", text, flags=re.M)[-1])
    return resolve_path(notebook_params(profile, **overrides)["out"])


def _interact(page, panel) -> str | None:
    """Change one ipywidget control (a dropdown, else a slider) and wait for the outputs to change;
    returns what was changed, None if the notebook has no such control."""
    outputs = panel.locator(".jp-OutputArea")
    before = outputs.evaluate_all("els => els.map(e => e.innerHTML).join('')")
    select = panel.locator(".widget-dropdown select, .jupyter-widget-Dropdown select")
    slider = panel.locator(".widget-slider .noUi-handle, .jupyter-widget-IntSlider .noUi-handle, "
                           ".widget-slider input[type=range]")
    # a dropdown with a choice to make (a single-model study shows a one-option model dropdown)
    choices = [c for c in select.all() if c.locator("option").count() > 1]
    if choices:
        control = choices[0]
        control.scroll_into_view_if_needed()
        current = control.input_value()
        values = control.locator("option").evaluate_all("os => os.map(o => o.value)")
        control.select_option(next(v for v in values if v != current))
        what = f"dropdown ({len(values)} options)"
    elif slider.count():
        control = slider.first
        control.scroll_into_view_if_needed()
        control.focus()
        page.keyboard.press("ArrowRight")
        what = "slider"
    else:
        return None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = outputs.evaluate_all("els => els.map(e => e.innerHTML).join('')")
        if after != before and page.evaluate(STATE_JS)["kernel"] == "idle":
            return what
    raise AssertionError(f"changing a {what} did not change any output within 30 s")


INTERACTED: dict[str, str] = {}


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_runs_in_jupyterlab(lab, page, name, request):
    timeout = float(request.config.getoption("--browser-timeout"))
    root: Path = lab["root"]
    sources = {p: p.read_bytes() for p in root.glob(f"{name}.*")}
    started = time.time()
    clock = time.monotonic()
    # open it as a user does: double-click the .py in the file browser
    page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}\.py$"))).dblclick()
    page.wait_for_function(f"() => {{ const w = window.jupyterapp.shell.currentWidget; "
                           f"return w && w.context && w.context.path.endsWith('{name}.py') && w.content "
                           f"&& w.content.widgets && w.content.widgets.length > 0; }}", timeout=60_000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").last
    assert panel.count() == 1, f"{name}.py did not open as a notebook (jupytext default viewer)"
    _accept_kernel_dialog(page)
    _wait_idle(page, 120)                                         # kernel started
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    time.sleep(2)
    state = _wait_idle(page, timeout)
    seconds = time.monotonic() - clock
    outputs = _outputs(page)
    shot = SHOTS / f"{name}.png"
    first_image = panel.locator(".jp-OutputArea-output img")
    if first_image.count():          # the first figure (the explorer's panels) at the top of the shot
        first_image.first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(shot))

    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert state["executed"] == state["total"], f"{name}: {state['executed']} of {state['total']} cells ran"
    stderr = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                     for o in outputs if o.get("name") == "stderr")
    assert not PROGRESS.search(stderr), f"{name}: progress text on stderr: {stderr[:300]!r}"

    registered, items = _expected(_out_folder(root, name), name, started)
    # the items the catalogue says this notebook draws, each shown: not what it happened to register
    expected_items = set(ITEMS.get(name, ()))
    assert expected_items <= set(items), f"{name}: catalogue items not registered: {sorted(expected_items - set(items))}"
    tagged = {o.get("metadata", {}).get("hearlib", {}).get("item") for o in outputs}
    assert expected_items <= tagged, f"{name}: catalogue items not shown inline: {sorted(expected_items - tagged)}"
    # Report.figure/table tag their outputs with the file they saved: every registered figure
    # (PNG) and table (CSV) must be displayed, as an image and an HTML table
    shown = {}
    for o in outputs:
        tag = o.get("metadata", {}).get("hearlib", {}).get("name")
        data = o.get("data", {})
        if tag and ("image/png" in data or "<table" in "".join(data.get("text/html", ""))):
            shown[tag] = shown.get(tag, 0) + 1
    missing = sorted(set(registered) - set(shown))
    assert not missing, f"{name}: registered but not displayed inline: {missing}"
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    tables = sum("<table" in "".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    n_png, n_csv = sum(f.endswith(".png") for f in registered), sum(f.endswith(".csv") for f in registered)
    dom_images = panel.locator(".jp-OutputArea-output img").count()
    dom_tables = panel.locator(".jp-OutputArea-output table").count()
    assert dom_images >= n_png and dom_tables >= n_csv, f"{name}: the page renders {dom_images} images and " \
        f"{dom_tables} tables for {n_png} figures and {n_csv} tables registered ({items})"

    what = _interact(page, panel)
    if what:
        INTERACTED[name] = what
        page.screenshot(path=str(SHOTS / f"{name}-interacted.png"))
    print(f"\n{name}: {seconds:.0f} s in JupyterLab, {images} images, {tables} tables, items {items}"
          + (f", {what} changed the output" if what else ""))
    # close it without saving; the sources in the lab folder are untouched (no autosave)
    page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget; w.context.model.dirty = false; "
                  "await w.sessionContext.shutdown(); w.dispose(); }")
    assert {p: p.read_bytes() for p in root.glob(f"{name}.*")} == sources, f"{name}: the sources were rewritten"


def test_explorer_widgets_respond():
    """00_explore's ipywidgets rendered and one interaction changed its output (in the run above)."""
    assert "00_explore" in NOTEBOOKS
    assert "00_explore" in INTERACTED, "00_explore shows no dropdown or slider that changes its output"
