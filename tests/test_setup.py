"""The set-up: a fresh clone's venv gets JupyterLab, and ``make lab`` opens it on notebooks/."""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_lab_extra_is_declared_and_installed_by_default():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("jupyterlab") for req in extras["lab"])
    assert "-e .[test,vision,lab]" in (ROOT / "environment.yml").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_venv_installs_lab_and_make_lab_opens_the_notebooks():
    def dry(*args):   # what make would run, without running it (-W: as if pyproject.toml changed)
        return subprocess.run(["make", "-n", "-s", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.splitlines()

    install = [line for line in dry("venv", "-W", "pyproject.toml") if "pip install" in line and "-e" in line]
    assert install == ['.venv/bin/python -m pip install --quiet -e ".[test,vision,lab]"']
    lab = dry("lab", "-o", ".venv/.hearlib-installed", "LAB_ARGS=--no-browser")
    root = " --allow-root" if os.getuid() == 0 else ""       # JupyterLab refuses root without it
    assert lab == [f'JUPYTER_CONFIG_PATH="{ROOT}/jupyter${{JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}}" '
                   f".venv/bin/python -m jupyter lab --notebook-dir=notebooks{root} --no-browser"]


def test_project_lab_config_opens_py_files_as_notebooks(monkeypatch):
    """The configuration `make lab` puts on JUPYTER_CONFIG_PATH: jupytext's documented default viewer,
    read by JupyterLab as a labconfig/default_setting_overrides.json (the browser test opens them)."""
    import json

    config = json.loads((ROOT / "jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    assert config["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
    from jupyter_server.services.config.manager import ConfigManager

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(ROOT / "jupyter"))
    overrides = ConfigManager(config_dir_name="labconfig").get("default_setting_overrides")
    assert overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"


def test_no_test_names_a_path_of_one_machine():
    """Tests find their data relative to the repository, never at one machine's absolute path."""
    roots = ["/" + "work/", "/" + "root/", "/" + "home/", "/" + "Users/"]
    here = Path(__file__).resolve().parent
    found = [(p.name, root) for p in sorted(here.rglob("*.py")) for root in roots
             if root in p.read_text(encoding="utf-8")]
    assert found == []
