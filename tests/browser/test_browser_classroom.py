"""A small class in headless Chromium (issue 11): five visitors on one server press Train at once; every one
sees their figure move and their run reach its result, visitors on the same link are told they share a run,
and visitors with their own seed train their own run (in one batch, arcface_viz.live.Batch)."""

from __future__ import annotations

import re

from tests.browser.helpers import (
    assert_no_errors,
    button,
    main_text,
    markdown_texts,
    open_app,
    plotly_data,
    screenshot,
    wait_for_button_label,
    wait_for_idle,
)
from tests.browser.test_browser_lessons import TIMEOUT_MS, new_page, wait_until

TRAIN = "toy-training:train"
LINK = "dataset=fig3&dim=2&loss=arcface&steps_per_frame=40"  # 99 % within about 10 frames
# three students on the teacher's link, two who tried their own seed
VISITORS = [LINK, LINK, LINK, f"{LINK}&seed=7", f"{LINK}&seed=8"]
_STATUS = re.compile(r"^ArcFace — step (?P<step>[\d,]+) · .*· test (?P<test>[\d.]+)%")


def status(page) -> tuple[int, float] | None:
    """(step, test accuracy %) of the status line on screen (the player's, in its iframe: the frame shown)."""
    for text in markdown_texts(page):
        m = _STATUS.match(text.strip())
        if m:
            return int(m["step"].replace(",", "")), float(m["test"])
    return None


def test_five_visitors_train_at_once_and_each_sees_their_run_move_and_finish(browser, app_server):
    opened = []
    try:
        for query in VISITORS:
            context, page = new_page(browser, viewport={"width": 1200, "height": 900})
            opened.append((context, page))
            open_app(page, app_server, "toy_training", query, timeout=TIMEOUT_MS)
            assert_no_errors(page)
        pages = [page for _, page in opened]
        before = [plotly_data(page, 0) for page in pages]
        for page in pages:  # everybody presses Train, one right after the other
            button(page, TRAIN).click()
        for page in pages:
            wait_for_button_label(page, TRAIN, "Pause", timeout=TIMEOUT_MS)
        for i, page in enumerate(pages):
            wait_until(f"visitor {i}'s figure moves", lambda page=page, i=i: plotly_data(page, 0) != before[i], page)
            wait_until(f"visitor {i} reaches 99 % test accuracy",
                       lambda page=page: (status(page) or (0, 0.0))[1] >= 99.0, page)
            assert_no_errors(page)
        for i, page in enumerate(pages[:3]):  # the same link: one run, and each is told so
            assert "Shared run" in main_text(page), i
        for i, page in enumerate(pages[3:], start=3):  # a seed of one's own: one's own run
            assert "Shared run" not in main_text(page), i
        # a visitor's Pause pauses only that visitor
        button(pages[0], TRAIN).click()
        wait_for_button_label(pages[0], TRAIN, "Train", timeout=TIMEOUT_MS)
        assert all(button(page, TRAIN).inner_text().strip().endswith("Pause") for page in pages[1:])
        wait_for_idle(pages[0], timeout=TIMEOUT_MS)
        assert plotly_data(pages[0], 0)  # the paused visitor's figure is drawn
        screenshot(pages[0], "classroom-shared-run")
    finally:
        for context, _ in opened:
            context.close()
