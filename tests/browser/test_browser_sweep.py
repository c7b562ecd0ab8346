"""The 'Which s and m?' page in headless Chromium: train a small map, click a cell of the heat map, land on the toy
lesson with exactly that cell's settings in the URL and on its sliders."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from arcface_viz.params import LOSS_SPEC
from tests.browser.helpers import (
    assert_no_errors,
    button,
    main_text,
    open_app,
    plotly_data,
    screenshot,
    slider_value,
    wait_for_idle,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000
SMALL = "x_values=4,64&y_values=0,0.8&steps=50&seed=2"


def train_small_map(page, base: str) -> None:
    open_app(page, base, "sweep", SMALL, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    button(page, "sweep:train-button").click()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)
    assert_no_errors(page)


def cell_centre(page, ix: int, iy: int) -> tuple[float, float]:
    """The page coordinates of cell (ix, iy) of the first heat map (plotly's own axis mapping)."""
    return page.evaluate(
        """([ix, iy]) => {
             const gd = document.querySelector('.js-plotly-plot');
             const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
             const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
             return [box.left + xa.l2p(ix), box.top + ya.l2p(iy)];
           }""", [ix, iy])


def test_click_a_cell_opens_its_run_in_the_toy_lesson(app_server, page):
    train_small_map(page, app_server)
    (heat,) = [t for t in plotly_data(page, 0) if t.get("name") == "values"]
    assert heat["type"] == "heatmap" and len(heat["z"]) == 2
    screenshot(page, "sweep-small-map")
    x, y = cell_centre(page, 1, 1)  # s = 64, m2 = 0.8: beyond the theory line
    page.mouse.move(x, y)
    page.wait_for_timeout(300)  # the tooltip of the cell under the mouse
    tooltip = page.locator(".hoverlayer").text_content() or ""
    assert "s (scale) = 64" in tooltip and "nan" not in tooltip.lower(), tooltip
    page.mouse.click(x, y)
    page.wait_for_url("**/toy_training?**", timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    query = {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}
    assert (query["dataset"], query["loss"], query["s"], query["m2"], query["seed"]) == \
        ("fig3", "arcface", "64.0", "0.8", "2"), page.url
    assert slider_value(page, LOSS_SPEC["s"].title) == 64.0
    assert slider_value(page, LOSS_SPEC["m2"].title) == 0.8
    assert "ArcFace — step 0" in main_text(page)  # the status line is in the live player
    screenshot(page, "sweep-opened-cell-in-toy-lesson")
