"""The static report of ``make site`` opened in headless Chromium (``make test-browser``; collected only with
``pytest --browser``).

It opens ``build/site/index.html`` from disk, checks that it lists the executed notebooks with their
titles and shows their figures and the results table, follows the first notebook's link and checks
that page's title and figures, and that neither page asked the network for anything. Screenshots
go to ``build/browser/site-*.png``. ``make test-browser`` builds the site first (render, then
``make site``); where no site was built the test is skipped and says how to build one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearlib import paths

pytestmark = pytest.mark.browser

SITE = paths.BUILD / "site"
SHOTS = paths.ROOT / "build" / "browser"

# every <img> on the page that has loaded and has a size (a figure really shown, not a broken link)
SHOWN_IMAGES = "(sel) => [...document.querySelectorAll(sel)].filter(i => i.complete && i.naturalWidth > 50).length"


@pytest.fixture(scope="module")
def site() -> Path:
    index = SITE / "index.html"
    if not index.is_file():
        pytest.skip(f"no static site at {SITE}: `make site` builds it from the notebooks that `make figures` "
                    "executed (build/notebooks/<profile>/); `make test-browser` runs render and site first")
    return SITE


@pytest.fixture(scope="module")
def browser_page(open_page):
    """A page of the session's Chromium (tests/browser/conftest.py) and the URLs it requests."""
    page = open_page(1300, 1000)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    yield page, requests
    page.close()


def test_site_shows_the_notebooks_and_their_figures(site, browser_page):
    page, requests = browser_page
    pages = json.loads((site / "pages.json").read_text())
    assert pages, "the site lists no notebook"
    SHOTS.mkdir(parents=True, exist_ok=True)

    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")
    assert "hearlib" in page.title()
    titles = page.locator("ol.notebooks h2 a").all_inner_texts()
    assert titles == [p["title"] for p in pages]          # every notebook, in order, by its own title
    with_figures = sum(p["figures"] > 0 for p in pages)
    assert with_figures and page.evaluate(SHOWN_IMAGES, "ol.notebooks img") == with_figures
    if page.locator("#results").count():                # the results table beside the paper's numbers
        assert page.locator(".results table tr").count() > 5
    page.screenshot(path=str(SHOTS / "site-index.png"), full_page=True)

    first = pages[0]
    page.locator("ol.notebooks h2 a").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/{first['name']}.html")
    assert page.title() == first["title"]
    assert page.locator("h1").first.inner_text().strip().startswith(first["title"].split(" (")[0])
    assert page.locator(".jp-Cell").count() > 3           # the notebook's cells, inputs and outputs
    shown = page.evaluate(SHOWN_IMAGES, ".jp-OutputArea-output img")
    assert shown == first["figures"] > 0, f"{shown} of {first['figures']} figures shown"
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").filter(
        has_text="Traceback").count() == 0
    page.locator(".jp-OutputArea-output img").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "site-notebook.png"))
    page.locator("nav.hearlib-site a", has_text="all notebooks").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/index.html")

    outside = sorted({url for url in requests if not url.startswith(("file:", "data:"))})
    assert outside == [], f"the site asked the network for {outside}"
