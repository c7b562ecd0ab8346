"""Fixtures for the browser tests: the real app served by `streamlit run app.py`, and Debian's
Chromium driven by Playwright.

    app_server  (session)  base URL of the running app, e.g. http://127.0.0.1:41234
    fresh_app_server       a server of its own that no browser has visited yet
    browser     (session)  Playwright Chromium at /usr/bin/chromium (never a Playwright download)
    page        (test)     a new browser context (its own Streamlit session), viewport 1400×1000

A failing test leaves a screenshot FAILED-<test>.png in a pytest tmp dir (its path is in the report,
with the server's log tail).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import helpers, server
from tests.browser.server import serve_app

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session", autouse=True)
def _screenshot_default(tmp_path_factory: pytest.TempPathFactory) -> None:
    helpers.default_screenshot_dir = tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served for the whole test session; its base URL."""
    with serve_app(tmp_path_factory.mktemp("streamlit") / "server.log") as base:
        yield base


@pytest.fixture
def fresh_app_server(tmp_path: Path) -> Iterator[str]:
    """A server of its own, just started, that no browser has visited yet (a few seconds to start).

    Name it before ``page`` in a test's arguments, so that a failing test's report shows this
    server's log."""
    with serve_app(tmp_path / "server.log") as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright; a missing browser is a failure, never a skip."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's Chromium. Run "
                    "`bash scripts/setup-dev.sh` (or `apt-get install chromium chromium-driver`).",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: run `bash scripts/setup-dev.sh` "
                    "(or `python -m pip install -r requirements-dev.txt`)", pytrace=False)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    """A fresh context (so a fresh Streamlit session) with a 1400×1000 viewport."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(helpers.DEFAULT_TIMEOUT_MS)
    pg = context.new_page()
    try:
        yield pg
    finally:
        report = getattr(request.node, "_report_call", None)
        if report is not None and report.failed:
            try:
                # Into the pytest tmp dir, even when SCREENSHOT_DIR points at docs/screenshots.
                path = helpers.screenshot(pg, f"FAILED-{request.node.name}", helpers.default_screenshot_dir)
                report.sections.append(("browser", f"screenshot of the failing page: {path}"))
            except Exception as exc:  # the page may be gone; the failure itself matters more
                report.sections.append(("browser", f"no screenshot: {exc}"))
            report.sections.append(("streamlit server log (tail)", server.log_tail(server.current_log)))
        context.close()
