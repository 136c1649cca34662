"""The one headless Chromium of tests/browser (Debian's chromium, driven by playwright), launched once per
session with a fresh profile; each test module opens its own page in it. Collected only with
``pytest --browser`` (tests/conftest.py), so nothing here runs otherwise."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HEARLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """A playwright browser context of headless Chromium with a fresh ``--user-data-dir``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: .venv/bin/pip install playwright (it is in the `test` extra)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get update && apt-get install -y chromium")
    profile_dir = tempfile.mkdtemp(prefix="hearlib-chromium-")
    try:
        with sync_playwright() as p:
            # a fresh --user-data-dir (playwright passes it for a persistent context)
            context = p.chromium.launch_persistent_context(profile_dir, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                           headless=True)
            yield context
            context.close()
    finally:
        shutil.rmtree(profile_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def open_page(chromium):
    """``open_page(width, height)`` -> a new page of :func:`chromium` with that viewport and a 60 s
    default timeout; the caller closes it."""

    def open_(width: int, height: int):
        page = chromium.new_page()
        page.set_viewport_size({"width": width, "height": height})
        page.set_default_timeout(60_000)
        return page

    return open_
