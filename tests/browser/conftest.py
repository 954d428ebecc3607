"""The browser tier (`make test-browser`): JupyterLab and nbgrader's formgrader driven by headless Chromium.

Collected only when COURSE_BROWSER=1 (the Makefile target sets it, after installing Playwright): the main suite
runs before Playwright is installed, so `make test` and `make test-fast` do not import these files. Chromium is Debian's /usr/bin/chromium, which the
Makefile installs with apt-get; Playwright never downloads a browser of its own.
Screenshots of every step go to runs/browser/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.paths import RUNS

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = RUNS / "browser"


if os.environ.get("COURSE_BROWSER") != "1":
    collect_ignore_glob = ["*.py"]


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    here = Path(__file__).parent
    reason = (f"{CHROMIUM} is missing and `make test-browser` could not install it here (it needs root and apt-get): "
              "install Debian's chromium package")
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_failed = report.failed
    return report


@pytest.fixture
def page(browser, request):
    """A fresh browser tab; on failure its last view is kept as runs/browser/FAILED-<test>.png."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    if getattr(request.node, "browser_failed", False):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"))
    context.close()


@pytest.fixture(scope="session")
def shots():
    """Save a screenshot of the page as runs/browser/NAME.png and return its path (an earlier run's are removed)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()

    def shot(page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return shot
