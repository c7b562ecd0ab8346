"""The running app in headless Chromium: every page of the registry opens without an error and draws
something; a shared link reopens a lesson with its values.

Screenshots land in $SCREENSHOT_DIR (scripts/screenshots.sh sets it to docs/screenshots) or a pytest
tmp dir, one per page, named after its url path.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from arcface_viz.params import CURVES_SPEC
from pages._registry import PAGES
from tests.browser.helpers import (
    MAIN,
    assert_no_errors,
    open_app,
    plotly_count,
    screenshot,
    set_slider,
    slider_text,
    slider_value,
)

pytestmark = pytest.mark.browser

# app.py makes the row with an empty url_path the default page, which Streamlit serves at "/".
DEFAULT_URL_PATH = next((row[2] for row in PAGES if not row[2]), PAGES[0][2])


def served_path(url_path: str) -> str:
    return "" if url_path == DEFAULT_URL_PATH else url_path


def page_name(row: tuple) -> str:
    """The page's name in test ids and screenshot files: its url path, or its file's stem for "/"."""
    return row[2] or row[0].rsplit("/", 1)[-1].removesuffix(".py")


@pytest.mark.parametrize("url_path, title, name", [(row[2], row[1], page_name(row)) for row in PAGES],
                         ids=[page_name(row) for row in PAGES])
def test_page_opens_without_errors(page, app_server, url_path, title, name):
    open_app(page, app_server, served_path(url_path))
    assert_no_errors(page)
    # The page asked for is the one served, not a fallback to the default page.
    assert urlparse(page.url).path.strip("/") == served_path(url_path)
    # Its entry in the sidebar navigation is the current one.
    current = page.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
    assert current.count() == 1
    assert current.locator('[data-testid="stMarkdownContainer"]').inner_text().strip() == title
    main = page.locator('[data-testid="stMain"]')
    charts = plotly_count(page, MAIN)  # the toy page's player (an iframe) included
    headings = main.locator('[data-testid="stHeading"] h1, [data-testid="stHeading"] h2').count()
    assert charts + headings > 0, f"/{url_path} draws neither a plotly chart nor a heading"
    path = screenshot(page, name)
    assert path.stat().st_size > 10_000  # a real picture, not an empty frame


def test_navigation_lists_every_page(page, app_server):
    open_app(page, app_server)
    assert_no_errors(page)
    more = page.locator('[data-testid="stSidebarNavViewButton"]')
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    links = page.locator('[data-testid="stSidebarNavLink"]')
    titles = links.locator('[data-testid="stMarkdownContainer"]').all_inner_texts()
    assert [t.strip() for t in titles] == [row[1] for row in PAGES]
    hrefs = [urlparse(links.nth(i).get_attribute("href") or "").path.rstrip("/") for i in range(links.count())]
    assert hrefs == [f"/{served_path(row[2])}".rstrip("/") for row in PAGES]


def test_shared_link_restores_state(page, browser, app_server):
    """Target logit: a link with s=30.0 opens with the slider at 30; moving the slider writes the new
    value into the URL, and that URL opened in a fresh session shows the same value."""
    label = CURVES_SPEC["s"].title
    open_app(page, app_server, "target_logit", "s=30.0")
    assert_no_errors(page)
    assert slider_value(page, label) == 30.0
    assert slider_text(page, label) == "30.0"

    set_slider(page, label, 20.5)
    assert parse_qs(urlparse(page.url).query).get("s") == ["20.5"]
    shared = urlparse(page.url)

    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        fresh = other.new_page()
        open_app(fresh, app_server, shared.path.lstrip("/"), shared.query)
        assert_no_errors(fresh)
        assert slider_value(fresh, label) == 20.5
    finally:
        other.close()


def test_deep_link_works_on_a_just_started_server(fresh_app_server, page):
    """The first visitor after a (re)start follows a shared link straight to a lesson: the lesson
    opens with the app's navigation and the link's values, with no 'Page not found'.

    (Streamlit treats a folder named pages/ beside app.py as a legacy multipage app until app.py
    has run once: the first deep link then answers 'Page not found'.)"""
    url_path = "target_logit"
    label = CURVES_SPEC["s"].title
    open_app(page, fresh_app_server, url_path, "s=30.0")
    assert_no_errors(page)
    assert urlparse(page.url).path.strip("/") == url_path
    titles = page.locator('[data-testid="stSidebarNavLink"] [data-testid="stMarkdownContainer"]')
    assert [t.strip() for t in titles.all_inner_texts()] == [row[1] for row in PAGES]
    assert slider_value(page, label) == 30.0
