"""Helpers that drive the running Streamlit app in headless Chromium (Playwright, sync API).

What they rely on in Streamlit 1.67's frontend (found by inspecting a served page):

- ``[data-testid="stApp"]`` carries ``data-test-script-state``: ``initial`` → ``running`` →
  ``notRunning`` (also ``rerunRequested``, ``stopRequested``, ``compilationError``) and
  ``data-test-connection-state`` (``CONNECTED`` when the websocket is up).  Fragment reruns
  (``st.fragment(run_every=...)``) flip it to ``running`` too, but do not show the status widget.
  A fast rerun may never show ``running`` at all (React renders both states in one batch).
- ``[data-testid="stStatusWidget"]`` appears (with a "Stop" button) only while a full run has been
  going for a moment; it is not a reliable signal alone, so :func:`wait_for_idle` also watches the
  script state and the websocket traffic.
- Errors: ``st.exception`` / an uncaught exception renders ``stException`` (with ``stExceptionMessage``)
  around an ``stAlertContentError``; ``st.error`` renders ``stAlertContentError`` inside ``stAlert``.
  Warnings are ``stAlertContentWarning``, info ``stAlertContentInfo``.
- A slider is ``[data-testid="stSlider"]`` with its label in ``[data-testid="stWidgetLabel"]``; the thumb
  is a visually hidden ``<input type="range">`` (role slider, ``aria-valuetext`` = the formatted value)
  that takes Arrow keys, Home/End and PageUp/PageDown (10 % of the range).  Every key press commits
  its value and asks the server for a rerun; setting the input's value (``fill``) moves the thumb
  without a commit.
- ``st.plotly_chart`` renders ``[data-testid="stPlotlyChart"]`` holding a ``.js-plotly-plot`` element
  whose ``.data`` holds the traces; numpy arrays arrive base64-encoded and Plotly.js keeps the decoded
  typed array in ``_inputArray``.
- Element code is split into chunks loaded on first use: until a chunk has loaded, the element is an
  ``[data-testid="stSkeleton"]``, often for most of a second after the run has ended.  During a rerun,
  elements not yet redrawn carry ``data-stale="true"``.
- ``st.navigation``'s sidebar: ``stSidebarNav`` > ``stSidebarNavLink`` (an ``<a>``, absolute href; the
  current page has ``aria-current="page"``; its title is in a ``stMarkdownContainer``, beside an icon
  whose ligature text is in ``stIconMaterial``), section headers ``stNavSectionHeader``, and
  ``stSidebarNavViewButton`` ("View N more") past ten pages.  An unknown URL path opens a dialog
  (``stDialog``, ``role="dialog"``) titled "Page not found" and runs the default page.
- ``st.title`` / ``st.header`` render ``h1`` / ``h2`` inside ``[data-testid="stHeading"]``.
- A components-v1 custom component is an ``<iframe data-testid="stCustomComponentV1">`` served from the same
  origin (``/component/<module>.<name>/index.html``), so its ``contentDocument`` is readable.  The toy page's live
  area is one such component, the player (pages/player/index.html): ``[data-testid="playerRoot"]`` holds ``.row`` >
  ``.col`` > items (status lines ``div.md``, captions ``div.caption``, headings ``div.heading``, figures
  ``div.plot``, each a plotly.js graph div with ``data-key`` "emb-0", "theta-0", …), ``body.dataset.frame`` is the
  frame on screen and ``window.playerLog`` lists [frame n, performance.now(), …] of every frame shown.  The chart
  and text helpers below read the charts and markdown of such iframes as if they stood at the iframe's place.
- The page scrolls inside ``[data-testid="stMain"]``, not the document, so Playwright's
  ``full_page=True`` alone captures only the viewport; :func:`screenshot` grows the viewport instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from playwright.sync_api import Frame, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

DEFAULT_TIMEOUT_MS = 60_000
SETTLE_MS = 300  # no change of script state and no websocket traffic this long: the page is idle

# Set by tests/browser/conftest.py to a pytest tmp dir; SCREENSHOT_DIR overrides it.
default_screenshot_dir: Path | None = None

# Installed before any page script runs.  It follows data-test-script-state and counts finished runs,
# and it times the websocket traffic and the visitor's last key press or click.  A fast rerun may never
# show in data-test-script-state (React renders "running" and "notRunning" in one batch), and the
# frontend may hold a widget's new value back until the current run ends, so "the rerun after my input
# is done" is read off the websocket: a message sent after the input, an answer after that, then quiet.
_RUN_TRACKER_JS = """
(() => {
  if (window.__stRun) return;
  const now = () => performance.now();
  const r = window.__stRun = {state: null, changed: now(), finished: 0, lastInput: -1, lastSend: -1, lastRecv: -1};
  r.read = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    const s = app ? app.getAttribute('data-test-script-state') : null;
    if (s !== r.state) {
      r.state = s;
      r.changed = now();
      if (s === 'notRunning' || s === 'compilationError') r.finished += 1;
    }
  };
  new MutationObserver(r.read).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-test-script-state'],
  });
  for (const ev of ['keydown', 'pointerdown', 'pointerup', 'click', 'input', 'change']) {
    document.addEventListener(ev, () => { r.lastInput = now(); }, true);
  }
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (!this.__stTracked) {
      this.__stTracked = true;
      this.addEventListener('message', () => { r.lastRecv = now(); });
    }
    r.lastSend = now();
    return send.call(this, data);
  };
})();
"""

# The plotly graph divs under ``scope`` (a CSS selector in the main document; null: the whole document), in
# document order, with each same-origin iframe standing for the graphs of its own document (recursively); an
# iframe whose document cannot be read (another origin) is skipped.  Pasted into the snippets below.
_ALL_PLOTS_JS = """
const allPlots = (scope) => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('.js-plotly-plot, iframe')) {
      if (el.tagName !== 'IFRAME') {
        out.push(el);
        continue;
      }
      let doc = null;
      try { doc = el.contentDocument; } catch (e) { doc = null; }
      if (doc) walk(doc);
    }
  };
  const root = scope ? document.querySelector(scope) : document;
  if (root) walk(root);
  return out;
};
"""

# Whether every custom-component iframe has loaded its document and, for the live player, shown a frame with
# every figure drawn (or said that its figures failed to load): true when there is none.
_FRAMES_READY_JS = """
const framesReady = () => [...document.querySelectorAll('iframe[data-testid="stCustomComponentV1"]')].every(f => {
  let doc = null;
  try { doc = f.contentDocument; } catch (e) { return true; }  // another origin: nothing to wait for
  if (!doc) return true;
  if (doc.URL === 'about:blank' || doc.readyState !== 'complete') return false;
  if (!doc.querySelector('[data-testid="playerRoot"]')) return true;
  if (doc.getElementById('failed')) return true;  // error_texts reports it
  return doc.body.dataset.frame !== undefined
    && [...doc.querySelectorAll('[data-testid="playerRoot"] .plot')].every(gd => Array.isArray(gd.data));
});
"""


def _with_lib(js: str) -> str:
    """``js`` with the shared functions above pasted where it names them (``/*ALL_PLOTS*/``, ``/*FRAMES_READY*/``)."""
    return js.replace("/*ALL_PLOTS*/", _ALL_PLOTS_JS.strip()).replace("/*FRAMES_READY*/", _FRAMES_READY_JS.strip())


_IDLE_JS = _with_lib("""
([settle, afterInput]) => {
  /*FRAMES_READY*/
  const r = window.__stRun;
  if (!r) return false;
  r.read();
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  const done = r.state === 'notRunning' || r.state === 'compilationError';
  // Elements are code-split: an stSkeleton stands in until a widget's or chart's code has loaded,
  // which can be well after the run ended; a plotly chart draws later still.
  const plotsDrawn = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => {
    const gd = c.querySelector('.js-plotly-plot');
    return gd && Array.isArray(gd.data);
  });
  const now = () => performance.now();
  const answered = r.lastSend > r.lastInput && r.lastRecv > r.lastSend;
  return done && r.finished >= 1
    && (!afterInput || answered)
    && !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && !document.querySelector('[data-stale="true"]')
    && plotsDrawn
    && framesReady()
    && now() - Math.max(r.changed, r.lastSend, r.lastRecv) >= settle;
}
""")

_STATE_JS = _with_lib("""
() => {
  /*ALL_PLOTS*/
  /*FRAMES_READY*/
  const app = document.querySelector('[data-testid="stApp"]');
  const r = window.__stRun || {};
  return {
    script_state: app && app.getAttribute('data-test-script-state'),
    connection_state: app && app.getAttribute('data-test-connection-state'),
    finished_runs: r.finished,
    status_widget: !!document.querySelector('[data-testid="stStatusWidget"]'),
    skeletons: document.querySelectorAll('[data-testid="stSkeleton"]').length,
    stale_elements: document.querySelectorAll('[data-stale="true"]').length,
    plotly_charts: document.querySelectorAll('[data-testid="stPlotlyChart"]').length,
    plotly_drawn: [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
      .filter(gd => Array.isArray(gd.data)).length,
    plotly_in_frames: allPlots(null).length - document.querySelectorAll('.js-plotly-plot').length,
    frames_ready: framesReady(),
    player_frame: [...document.querySelectorAll('iframe')].map(f => {
      try { return f.contentDocument ? f.contentDocument.body.dataset.frame : null; } catch (e) { return null; }
    }).filter(n => n !== null && n !== undefined),
    ms_ago: Object.fromEntries(['changed', 'lastInput', 'lastSend', 'lastRecv']
      .map(k => [k, r[k] >= 0 ? Math.round(performance.now() - r[k]) : null])),
  };
}
""")

# The replacer for JSON.stringify of a graph's data: plotly.js decodes {dtype, bdata} arrays into _inputArray;
# typed arrays become plain arrays.
PLOTLY_DATA_REPLACER = """(key, value) => {
    if (value && typeof value === 'object' && !Array.isArray(value) && '_inputArray' in value) {
      const a = value._inputArray;
      return Array.isArray(a) ? a.map(row => ArrayBuffer.isView(row) ? Array.from(row) : row)
                              : ArrayBuffer.isView(a) ? Array.from(a) : a;
    }
    if (ArrayBuffer.isView(value)) return Array.from(value);
    return value;
  }"""

_PLOTLY_JS = _with_lib("""
(i) => {
  /*ALL_PLOTS*/
  const plots = allPlots(null);
  if (i >= plots.length || !Array.isArray(plots[i].data)) return null;
  return JSON.stringify(plots[i].data, PLOTLY_DATA_REPLACER);
}
""".replace("PLOTLY_DATA_REPLACER", PLOTLY_DATA_REPLACER))

# What a live player says when its figures could not be loaded (pages/player/index.html's #failed).
_PLAYER_FAILED_JS = """
() => [...document.querySelectorAll('iframe')].map(f => {
  try { return f.contentDocument && f.contentDocument.getElementById('failed'); } catch (e) { return null; }
}).filter(Boolean).map(el => el.innerText)
"""

_ERROR_SELECTORS = ('[data-testid="stException"]', '[data-testid="stAlertContentError"]')

_tracked: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


def _track(page: Page) -> list[str]:
    """Install the run tracker and collect uncaught JavaScript errors of ``page`` (once per page)."""
    if page not in _tracked:
        errors: list[str] = []
        page.add_init_script(_RUN_TRACKER_JS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _tracked[page] = errors
    return _tracked[page]


def wait_for_idle(page: Page, *, after_input: bool = False, settle_ms: int = SETTLE_MS,
                  timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until Streamlit has finished running the script: a run has ended, the websocket is
    connected, no status widget, every element's code loaded (no ``stSkeleton``), no stale element,
    every plotly chart drawn, and neither a change of script state nor websocket traffic for
    ``settle_ms``.

    With ``after_input``, the frontend must also have sent a message after the last key press or click
    in the page and had an answer: call it after an interaction that causes a rerun
    (:func:`wait_for_rerun`).

    A page whose ``st.fragment(run_every=...)`` ticks faster than ``settle_ms`` never settles: pass a
    smaller ``settle_ms`` for it.
    """
    try:
        page.wait_for_function(_IDLE_JS, arg=[settle_ms, after_input], timeout=timeout, polling=100)
    except PlaywrightTimeoutError:
        state = page.evaluate(_STATE_JS)
        raise AssertionError(f"the app did not become idle within {timeout / 1000:g} s at {page.url}: "
                             f"{state}; errors shown: {error_texts(page)}") from None


def wait_for_rerun(page: Page, *, timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """After a click or key press that changes a widget: wait for the rerun it causes to finish.
    (An interaction that changes nothing causes no rerun, and this times out.)"""
    wait_for_idle(page, after_input=True, timeout=timeout)


def open_app(page: Page, base_url: str, url_path: str = "", query: str | dict[str, Any] = "",
             *, timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """Open ``base_url/url_path?query`` and wait until the script has run to the end."""
    _track(page)
    if isinstance(query, dict):
        from urllib.parse import urlencode

        query = urlencode(query)
    query = query.lstrip("?")
    url = f"{base_url.rstrip('/')}/{url_path.lstrip('/')}" + (f"?{query}" if query else "")
    page.goto(url, timeout=timeout)
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    wait_for_idle(page, timeout=timeout)


def error_texts(page: Page) -> list[str]:
    """Texts of every error Streamlit shows (exceptions, st.error, a lost connection) and every
    uncaught JavaScript error since the page was opened."""
    found = []
    for sel in _ERROR_SELECTORS:
        for el in page.locator(sel).all():
            found.append(f"{sel}: {el.inner_text().strip()[:2000]}")
    # An exception box contains an stAlertContentError too: keep one line per box.
    found = list(dict.fromkeys(found))
    app = page.locator('[data-testid="stApp"]')
    if app.count():
        conn = app.get_attribute("data-test-connection-state")
        if conn != "CONNECTED":
            found.append(f"connection state {conn!r}")
        if app.get_attribute("data-test-script-state") == "compilationError":
            found.append("script state 'compilationError'")
    for dialog in page.locator('[role="dialog"]').all():
        text = dialog.inner_text().strip()
        if re.search(r"not found|error", text, re.IGNORECASE):
            found.append(f"dialog: {text[:500]}")
    for text in page.evaluate(_PLAYER_FAILED_JS):
        found.append(f"player: {text}")
    found += [f"javascript: {e}" for e in _tracked.get(page, [])]
    return found


def assert_no_errors(page: Page) -> None:
    """Fail if the page shows an exception, an st.error box, a lost connection, a 'page not found'
    dialog, or had an uncaught JavaScript error."""
    errors = error_texts(page)
    assert not errors, "the page shows errors:\n" + "\n---\n".join(errors)


def _safe_name(name: str) -> str:
    stem = name[:-4] if name.endswith(".png") else name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "page"
    return stem + ".png"


def screenshot_dir() -> Path:
    env = os.environ.get("SCREENSHOT_DIR")
    if env:
        return Path(env)
    return default_screenshot_dir or Path(tempfile.gettempdir()) / "arcface-viz-screenshots"


def screenshot(page: Page, name: str, directory: str | os.PathLike | None = None,
               *, max_height: int = 12_000) -> Path:
    """Save a screenshot of the whole page (every row of the main area and the sidebar) as
    ``<directory>/<name>.png``; the directory is ``directory``, else $SCREENSHOT_DIR, else a pytest
    tmp dir.  Returns the path."""
    out = Path(directory) if directory is not None else screenshot_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / _safe_name(name)
    size = page.viewport_size or {"width": 1400, "height": 1000}
    # Streamlit scrolls inside stMain (and the sidebar): make the viewport as tall as their content.
    needed = page.evaluate(
        """() => Math.max(window.innerHeight, ...[...document.querySelectorAll(
             '[data-testid="stMain"], [data-testid="stSidebarContent"], [data-testid="stSidebar"]')]
             .map(e => e.scrollHeight + e.getBoundingClientRect().top))"""
    )
    height = min(max(int(math.ceil(needed)), size["height"]), max_height)
    try:
        if height != size["height"]:
            page.set_viewport_size({"width": size["width"], "height": height})
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            page.wait_for_timeout(200)  # let plotly finish its resize before the picture is taken
        page.screenshot(path=str(path), full_page=True, animations="disabled")
    finally:
        if height != size["height"]:
            page.set_viewport_size(size)
    return path


_PLOTLY_COUNT_JS = _with_lib("""
(scope) => {
  /*ALL_PLOTS*/
  return allPlots(scope).length;
}
""")


def plotly_count(page: Page, scope: str | None = None) -> int:
    """How many plotly charts the page has drawn (``.js-plotly-plot``), those inside same-origin iframes (the
    toy page's player) included; with ``scope`` (a CSS selector, e.g. ``'[data-testid="stMain"]'``), only those
    inside the first element it matches."""
    return page.evaluate(_PLOTLY_COUNT_JS, scope)


# The texts of the main area's markdown, in document order, an iframe standing for its player's status lines,
# captions and headings (each without its "?" help mark).
_MARKDOWN_TEXTS_JS = """
(scope) => {
  const out = [];
  const text = (el, help) => {
    if (!help || !el.querySelector('.help')) return el.innerText;
    const copy = el.cloneNode(true);
    copy.querySelectorAll('.help').forEach(h => h.remove());
    return copy.textContent;
  };
  const walk = (root, inFrame) => {
    const sel = inFrame ? '[data-testid="playerRoot"] :is(.md, .caption, .heading), iframe'
                        : '[data-testid="stMarkdownContainer"], iframe';
    for (const el of root.querySelectorAll(sel)) {
      if (el.tagName !== 'IFRAME') {
        out.push(text(el, inFrame));
        continue;
      }
      let doc = null;
      try { doc = el.contentDocument; } catch (e) { doc = null; }
      if (doc) walk(doc, true);
    }
  };
  const root = scope ? document.querySelector(scope) : document;
  if (root) walk(root, false);
  return out;
}
"""

MAIN = '[data-testid="stMain"]'


def markdown_texts(page: Page, scope: str | None = MAIN) -> list[str]:
    """The inner texts of the markdown in the main area (every ``stMarkdownContainer``: st.markdown, st.caption,
    titles, button labels, …), in document order, where the toy page's player stands for the texts it shows
    (status lines ``.md``, captions ``.caption``, headings ``.heading``, help marks left out).  ``scope``: another
    CSS selector to read inside, or None for the whole document."""
    return page.evaluate(_MARKDOWN_TEXTS_JS, scope)


_FRAME_TEXTS_JS = """
(scope) => {
  const out = [];
  const walk = (root) => {
    for (const f of root.querySelectorAll('iframe')) {
      let doc = null;
      try { doc = f.contentDocument; } catch (e) { doc = null; }
      if (!doc || !doc.body) continue;
      out.push(doc.body.innerText);
      walk(doc);
    }
  };
  const root = scope ? document.querySelector(scope) : document;
  if (root) walk(root);
  return out;
}
"""


def main_text(page: Page) -> str:
    """The main area's inner text, followed by the inner text of each same-origin iframe inside it (the toy page's
    player: its status lines, captions and headings), which is not part of its parent's inner text."""
    return "\n".join([page.locator(MAIN).inner_text(), *page.evaluate(_FRAME_TEXTS_JS, MAIN)])


def player(page: Page, index: int = 0) -> Frame:
    """The ``index``-th live player's frame on the page (Playwright's Frame of its iframe), once it has shown a
    frame."""
    iframe = page.locator('iframe[data-testid="stCustomComponentV1"][title$=".player"]').nth(index)
    frame = iframe.element_handle().content_frame()
    if frame is None:
        raise AssertionError("the player's iframe has no document")
    frame.wait_for_function("() => document.body && document.body.dataset.frame !== undefined", polling=100)
    return frame


def plotly_data(page: Page, index: int = 0, *, timeout: float = DEFAULT_TIMEOUT_MS) -> list[dict[str, Any]]:
    """The data traces of the ``index``-th plotly chart on the page (document order, the charts of a same-origin
    iframe such as the toy page's player counted at the iframe's place), as plain JSON: numpy arrays come back as
    lists.  Waits for the chart to be drawn."""
    handle = page.wait_for_function(_PLOTLY_JS, arg=index, timeout=timeout, polling=100)
    return json.loads(handle.json_value())


def wait_for_plotly_change(page: Page, index: int, old: list[dict[str, Any]],
                           *, timeout: float = DEFAULT_TIMEOUT_MS) -> list[dict[str, Any]]:
    """Wait until chart ``index`` holds data different from ``old`` (compared as parsed JSON);
    return the new data."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        data = plotly_data(page, index, timeout=timeout)
        if data != old:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"plotly chart {index} did not change within {timeout / 1000:g} s")
        page.wait_for_timeout(100)


def slider(page: Page, label: str) -> Locator:
    """The thumb (``input[type=range]``) of the one slider whose label reads exactly ``label``."""
    widgets = page.locator('[data-testid="stSlider"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]').get_by_text(label, exact=True))
    n = widgets.count()
    if n != 1:
        labels = page.locator('[data-testid="stSlider"] [data-testid="stWidgetLabel"]').all_inner_texts()
        raise AssertionError(f"expected one slider labelled {label!r}, found {n}; sliders on the page: {labels}")
    return widgets.locator('input[type="range"]').first


def slider_value(page: Page, label: str) -> float:
    """The numeric value the slider labelled ``label`` shows."""
    return float(slider(page, label).evaluate("el => el.value"))


def slider_text(page: Page, label: str) -> str:
    """The value as the slider displays it (its format applied, e.g. '30.0')."""
    return slider(page, label).get_attribute("aria-valuetext") or ""


def set_slider(page: Page, label: str, value: float, *, timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """Move the slider labelled ``label`` to ``value`` with one committed change, and wait for the
    rerun it causes.  ``value`` must be min + k·step.

    The ends are reached with Home / End.  Anywhere else the thumb is first set, without a commit, one
    step below ``value`` (the hidden range input takes a value silently), then ArrowRight moves it onto
    ``value`` and commits, as a person's key press does.  One commit, not one per step: a burst of
    dozens of commits makes the server drop reruns on a busy machine.
    """
    thumb = slider(page, label)
    cur, lo, hi, step = thumb.evaluate("el => [+el.value, +el.min, +el.max, +(el.step || 1)]")
    tol = step * 1e-6
    if not lo - tol <= value <= hi + tol:
        raise ValueError(f"{label!r}: {value} is outside the slider's range {lo}–{hi}")
    k = (value - lo) / step
    if abs(k - round(k)) > 1e-6:
        raise ValueError(f"{label!r}: {value} is not on the slider's grid (min {lo}, step {step})")
    if abs(cur - value) <= tol:
        return
    k = round(k)
    thumb.focus()
    if k == 0:
        thumb.press("Home")
    elif abs(value - hi) <= tol:
        thumb.press("End")
    else:
        below = round(lo + (k - 1) * step, 12) + 0.0  # never -0.0
        # As the range input writes its value back ("59", not "59.0"): Playwright's fill fails with "Malformed
        # value" when the input's value differs from the text it was given.
        text = f"{below:.12f}".rstrip("0").rstrip(".")
        thumb.fill(text if text not in ("", "-") else "0")
        thumb.press("ArrowRight")
    try:
        page.wait_for_function("([el, v, tol]) => Math.abs(+el.value - v) <= tol",
                               arg=[thumb.element_handle(), value, tol], timeout=timeout, polling=100)
    except PlaywrightTimeoutError:
        raise AssertionError(f"slider {label!r} shows {thumb.evaluate('el => el.value')}, not {value}") from None
    wait_for_rerun(page, timeout=timeout)


_PLOTLY_LAYOUT_JS = _with_lib("""
(i) => {
  /*ALL_PLOTS*/
  const plots = allPlots(null);
  if (i >= plots.length || !plots[i]._fullLayout || !Array.isArray(plots[i].data)) return null;
  const L = plots[i]._fullLayout;
  return JSON.stringify({
    title: (L.title && L.title.text) || '',
    font_size: L.font && L.font.size,
    title_font_size: L.title && L.title.font ? L.title.font.size : null,
    height: L.height,
    annotations: (L.annotations || []).map(a => a.text || ''),
  });
}
""")


def plotly_layout(page: Page, index: int = 0, *, timeout: float = DEFAULT_TIMEOUT_MS) -> dict[str, Any]:
    """What Plotly.js drew for chart ``index`` (numbered as in :func:`plotly_data`; its full layout, after
    Streamlit's theme or the player's template): ``title`` (text, with its HTML), ``font_size``, ``title_font_size``,
    ``height`` and ``annotations`` (subplot titles)."""
    handle = page.wait_for_function(_PLOTLY_LAYOUT_JS, arg=index, timeout=timeout, polling=100)
    return json.loads(handle.json_value())


def plotly_titles(page: Page) -> list[str]:
    """The title text of every plotly chart on the page (the player's included), in document order."""
    return [plotly_layout(page, i)["title"] for i in range(plotly_count(page))]


def button(page: Page, key: str) -> Locator:
    """The ``<button>`` of the Streamlit button created with ``key=key`` (Streamlit puts the key, every
    character other than a letter, digit, ``-`` or ``_`` made a ``-``, in a ``st-key-…`` class)."""
    cls = "st-key-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)
    found = page.locator(f".{cls} button")
    if found.count() != 1:
        raise AssertionError(f"expected one button with key {key!r} (class {cls}), found {found.count()}")
    return found


def wait_for_button_label(page: Page, key: str, label: str, *, timeout: float = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until the button with ``key`` reads ``label`` (its icon's ligature text aside)."""
    cls = "st-key-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)
    try:
        page.wait_for_function(
            """([cls, label]) => {
                 const b = document.querySelector('.' + cls + ' button');
                 const m = b && b.querySelector('[data-testid="stMarkdownContainer"]');
                 return !!m && m.innerText.trim() === label;
               }""", arg=[cls, label], timeout=timeout, polling=100)
    except PlaywrightTimeoutError:
        shown = button(page, key).inner_text().replace("\n", " ") if page.locator(f".{cls} button").count() else None
        raise AssertionError(f"button {key!r} did not come to read {label!r} within {timeout / 1000:g} s (it reads "
                             f"{shown!r}); state: {page.evaluate(_STATE_JS)}; errors shown: {error_texts(page)}"
                             ) from None
