"""The toy page's live player (pages/_player.py, pages/player/index.html) in headless Chromium: while training, the
figures are updated in place (the same graph element, new data), frame after frame, and the status line always
names the step of the frame on screen."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser.helpers import (
    PLOTLY_DATA_REPLACER,
    assert_no_errors,
    button,
    markdown_texts,
    open_app,
    player,
    plotly_data,
    screenshot,
    wait_for_button_label,
    wait_for_idle,
)
from tests.browser.test_browser_lessons import TIMEOUT_MS

pytestmark = pytest.mark.browser

TRAIN = "toy-training:train"
PER_FRAME = 10
LINK = f"dataset=fig3&dim=2&loss=arcface&steps_per_frame={PER_FRAME}"
SAMPLE_S = 3.0  # how long the playing player is watched
MIN_FRAMES = 5  # frames it must show in that time (one every 0.15 s would be 20)
_STEP = re.compile(r"^ArcFace — step (?P<step>[\d,]+) · ")
TAG = "the embedding figure before Train"

# Run inside the player's document, so that what it reads is one moment of it: a frame is shown (status lines,
# figures, body.dataset.frame, playerLog) in one go, never half.
_TAG_JS = """
(tag) => {
  const gd = document.querySelector('[data-testid="playerRoot"] .plot[data-key="emb-0"]');
  if (!gd || !gd.classList.contains('js-plotly-plot') || !Array.isArray(gd.data)) return false;
  gd.__testTag = tag;
  return true;
}
"""

_SAMPLE_JS = """
(tag) => {
  const root = document.querySelector('[data-testid="playerRoot"]');
  const gd = root.querySelector('.plot[data-key="emb-0"]');
  const status = root.querySelector('.md');
  const data = gd && Array.isArray(gd.data) ? JSON.stringify(gd.data, PLOTLY_DATA_REPLACER) : null;
  return {
    same_node: !!gd && gd.__testTag === tag && gd.isConnected,
    graphs: root.querySelectorAll('.plot').length,
    data: data,
    frame: document.body.dataset.frame === undefined ? null : Number(document.body.dataset.frame),
    status: status ? status.textContent : null,
    log: window.playerLog.map(entry => entry[0]),
    now: performance.now(),
  };
}
""".replace("PLOTLY_DATA_REPLACER", PLOTLY_DATA_REPLACER)

# The embedding figure's box in the page: the iframe's place plus the figure's place inside it.
_FIGURE_BOX_JS = """
() => {
  const f = document.querySelector('iframe[data-testid="stCustomComponentV1"]');
  const gd = f.contentDocument.querySelector('.plot[data-key="emb-0"]');
  const a = f.getBoundingClientRect(), b = gd.getBoundingClientRect();
  return {x: a.left + b.left, y: a.top + b.top, width: b.width, height: b.height};
}
"""


def _step(status: str | None) -> int | None:
    m = _STEP.match((status or "").strip())
    return int(m["step"].replace(",", "")) if m else None


def _colours_in(path, box: dict[str, float]) -> tuple[int, int]:
    """(pixels, distinct colours) of clearly coloured pixels (not white, grey or black) inside ``box`` (page
    coordinates) of the PNG at ``path``: the figure's class colours, none on a blank figure."""
    from PIL import Image

    with Image.open(path) as img:
        region = np.asarray(img.convert("RGB").crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                                                     int(box["y"] + box["height"]))), dtype=np.int16)
    coloured = region.reshape(-1, 3)
    coloured = coloured[coloured.max(axis=1) - coloured.min(axis=1) > 60]
    return len(coloured), len(np.unique(coloured // 32, axis=0))


def test_the_player_updates_the_figures_in_place_and_the_status_names_the_frame_on_screen(page, app_server):
    open_app(page, app_server, "toy_training", LINK, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    frame = player(page)
    assert frame.wait_for_function(_TAG_JS, arg=TAG, timeout=TIMEOUT_MS, polling=100)
    start = frame.evaluate(_SAMPLE_JS, TAG)
    assert start["same_node"] and start["data"], start
    assert start["frame"] == 0 and _step(start["status"]) == 0, start
    assert json.loads(start["data"]) == plotly_data(page, 0)  # the helpers read the player's figure as chart 0

    button(page, TRAIN).click()
    wait_for_button_label(page, TRAIN, "Pause", timeout=TIMEOUT_MS)
    # The first frame of the run reaches the browser (the server's first training turn may take a moment) ...
    frame.wait_for_function("(n) => window.playerLog.length > n", arg=len(start["log"]), timeout=TIMEOUT_MS,
                            polling=50)
    # ... then the playing player is watched for SAMPLE_S seconds.
    samples = []
    deadline = time.monotonic() + SAMPLE_S
    while time.monotonic() < deadline:
        samples.append(frame.evaluate(_SAMPLE_JS, TAG))
        page.wait_for_timeout(50)
    assert len(samples) >= 10, f"only {len(samples)} samples in {SAMPLE_S} s"

    # (a) the embedding figure is the same graph element throughout, with new data: updated in place, never rebuilt
    rebuilt = [s for s in samples if not s["same_node"]]
    assert not rebuilt, f"the embedding figure was replaced by a new element at frame {rebuilt[0]['frame']}"
    assert all(s["graphs"] == start["graphs"] for s in samples), [s["graphs"] for s in samples]
    shown = [s["data"] for s in samples]
    changes = sum(1 for a, b in zip([start["data"], *shown], shown, strict=False) if a != b)
    assert changes >= 3, f"the embedding figure's data changed only {changes} times in {SAMPLE_S} s"

    # (b) frames are played one after the other: at least MIN_FRAMES of them while watched, in increasing order
    grown = len(samples[-1]["log"]) - len(samples[0]["log"])
    played = samples[-1]["log"][len(start["log"]):]
    assert grown >= MIN_FRAMES, f"the player showed {grown} frames in {SAMPLE_S} s: {played}"
    assert played == sorted(set(played)), f"frames shown out of order or twice: {played}"
    assert played[0] > start["frame"], played

    # (c) the status line always names the step of the frame on screen
    for s in samples:
        assert s["frame"] is not None and _step(s["status"]) == s["frame"] * PER_FRAME, (s["frame"], s["status"])
    frames_seen = {s["frame"] for s in samples}
    assert len(frames_seen) >= 3, f"the samples saw only frames {sorted(frames_seen)}"

    # a picture while training, with the embedding figure drawn in it (where it stands on the page, stMain
    # scrolled to the top as the screenshot's tall viewport shows it)
    page.locator('[data-testid="stMain"]').evaluate("el => { el.scrollTop = 0; }")
    box = page.evaluate(_FIGURE_BOX_JS)
    path = screenshot(page, "player-training")
    pixels, colours = _colours_in(path, box)
    assert pixels > 1_000 and colours >= 4, f"the embedding figure looks blank in {path}: {pixels} coloured " \
                                            f"pixels, {colours} colours"
    assert frame.evaluate(_SAMPLE_JS, TAG)["same_node"], "the resize for the screenshot rebuilt the figure"

    button(page, TRAIN).click()
    wait_for_button_label(page, TRAIN, "Train", timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)
    end = frame.evaluate(_SAMPLE_JS, TAG)
    assert end["same_node"], "pausing rebuilt the embedding figure"
    assert _step(end["status"]) == end["frame"] * PER_FRAME > 0, end["status"]
    # the page's own reading of the status line (tests/browser/helpers.py) is the player's
    assert [t for t in markdown_texts(page) if _STEP.match(t.strip())] == [end["status"]]
    assert_no_errors(page)
    print(f"{len(samples)} samples, {changes} changes of the figure, {grown} frames played while watched "
          f"({played[0]}…{played[-1]}), frames seen {sorted(frames_seen)}; picture: {pixels} coloured pixels, "
          f"{colours} colours")


def test_the_server_knows_which_player_frame_reached_the_browser(tmp_path, page) -> None:
    """pages/_player.py reads from a real server's flushes which player frame has left for the browser
    (track_delivery), and wait_delivered holds a run until its frame has: after each run, the frame it sent is
    the newest one delivered, and the next run starts knowing it.  (If Streamlit's internals moved, delivered()
    would answer None or -1 here, and a busy classroom would lose or resend frames.)"""
    from tests.browser.server import serve_app

    with serve_app(tmp_path / "server.log", Path(__file__).with_name("player_delivery_app.py")) as base:
        page.goto(base)
        line = page.get_by_text(re.compile(r"^run \d+ · delivered"))
        line.wait_for(timeout=TIMEOUT_MS)
        seen = []
        for clicks in range(3):
            if clicks:
                page.get_by_role("button", name="Again").click()
            page.wait_for_function(f"() => /^run {clicks} · /.test(document.body.innerText.split('\\n')"
                                   ".find(l => l.startsWith('run ')) || '')", timeout=TIMEOUT_MS)
            seen.append(line.inner_text())
        frame = page.frame_locator("iframe").first.locator(".md")
        assert frame.inner_text() == "frame 2"
    assert seen == ["run 0 · delivered before -1 · after 0", "run 1 · delivered before 0 · after 1",
                    "run 2 · delivered before 1 · after 2"], seen
