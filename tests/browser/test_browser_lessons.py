"""Every lesson of the registry in headless Chromium, as a visitor uses it: open it, move a control and see
the figure change, open a shared link and see its values restored; live training that starts and pauses;
the explainer's Next button; presenter mode; two visitors training at once; and the gallery's states.

Each registry row gets a case in ``LESSONS`` (below).  A page added to pages/_registry.py without a case
is driven generically: its first slider moves one step, some figure must change, and the link it leaves
must reopen the same value in a new session.  A page the generic check cannot drive (no slider) fails
with a message saying to add a case: never a silent skip.

Screenshots land in $SCREENSHOT_DIR or a pytest tmp dir; ``test_gallery_state`` makes the gallery's
extra pictures (scripts/screenshots.sh).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from arcface_viz.params import CURVES_SPEC, LOSS_SPEC, MARGINS_SPEC, TOY_SPEC
from pages._registry import PAGES
from tests.browser import helpers
from tests.browser.helpers import (
    assert_no_errors,
    button,
    main_text,
    markdown_texts,
    open_app,
    plotly_count,
    plotly_data,
    plotly_layout,
    plotly_titles,
    screenshot,
    set_slider,
    slider_value,
    wait_for_button_label,
    wait_for_idle,
    wait_for_plotly_change,
    wait_for_rerun,
)
from tests.browser.server import serve_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000  # a live-training page on a busy 2-core machine: generous, and only ever a bound
DEFAULT_URL_PATH = next((row[2] for row in PAGES if not row[2]), PAGES[0][2])
TOY_TRAIN, TOY_STEP = "toy-training:train", "toy-training:step"  # the buttons' keys (pages/_live.py)


def served_path(url_path: str) -> str:
    return "" if url_path == DEFAULT_URL_PATH else url_path


def page_name(row: tuple) -> str:
    return row[2] or row[0].rsplit("/", 1)[-1].removesuffix(".py")


def query_of(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def headings(page) -> list[str]:
    return [t.strip() for t in page.locator('[data-testid="stHeading"] h1, [data-testid="stHeading"] h2')
            .all_inner_texts()]


def trace_names(page, index: int) -> list[str]:
    return [t.get("name") or "" for t in plotly_data(page, index)]


def wait_until(what: str, check: Callable[[], Any], page, *, timeout_ms: float = TIMEOUT_MS, poll_ms: int = 200):
    """Poll ``check()`` until it returns something truthy (returned); fail saying ``what`` otherwise."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms / 1000:g} s waiting until {what}")
        page.wait_for_timeout(poll_ms)


# --- the live toy-training page ---------------------------------------------------------------------------

_HEADER = re.compile(r"^(?P<loss>[^\n]+?) — step (?P<step>[\d,]+) · ")


def toy_headers(page) -> list[tuple[str, int]]:
    """(loss label, step) of each trained model's header line ("ArcFace — step 120 · loss …"; the MNIST page's
    reads the same way), in the order shown.  The toy page's lines are the status lines of its player (an iframe:
    the frame on screen), the MNIST page's are markdown in the main document; helpers.markdown_texts reads both."""
    out = []
    for text in markdown_texts(page):
        m = _HEADER.match(text.strip())
        if m:
            out.append((m["loss"].strip(), int(m["step"].replace(",", ""))))
    return out


def toy_steps(page) -> list[int]:
    return [step for _, step in toy_headers(page)]


def press(page, key: str) -> None:
    """Click a button that reruns the page, and wait for that rerun (not for a live page: it never idles)."""
    button(page, key).click()
    wait_for_rerun(page, timeout=TIMEOUT_MS)


# --- one case per page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lesson:
    """How to drive one page.

    ``prepare`` runs first (e.g. train once); ``act`` then changes one control and waits for the rerun;
    afterwards chart ``chart`` must differ (or, with ``observe``, what ``observe`` returns) and the URL must hold
    ``url_after``.  ``link`` is a shared link's
    query with non-default values: the page must show ``sliders`` (label -> value), every text of ``texts`` in
    its figures' titles, trace names, headings or main text, and keep ``link`` in its URL.
    """

    act: Callable[[Any], None] | None = None
    prepare: Callable[[Any], None] | None = None
    chart: int = 0
    observe: Callable[[Any], Any] | None = None
    url_after: dict[str, str] = field(default_factory=dict)
    link: str = ""
    sliders: dict[str, float] = field(default_factory=dict)
    texts: tuple[str, ...] = ()
    check_link: Callable[[Any], None] | None = None
    server: str = "app"  # "backend": a server of its own with the backend switched on
    no_controls: str = ""  # a page without lesson controls: why (the test checks it has none)


def _slider(label: str, value: float) -> Callable[[Any], None]:
    return lambda page: set_slider(page, label, value, timeout=TIMEOUT_MS)


def _explainer_next(page) -> None:
    press(page, "explainer:next")


def _figure_texts(page) -> str:
    parts = [main_text(page)]
    for i in range(plotly_count(page)):
        layout = plotly_layout(page, i)
        parts += [layout["title"], *layout["annotations"], *trace_names(page, i)]
    return "\n".join(parts)


def _toy_link_check(page) -> None:
    assert toy_headers(page) == [("CosFace", 0)], toy_headers(page)
    seed = page.locator('[data-testid="stNumberInput"]').filter(has_text=TOY_SPEC["seed"].title).locator("input")
    assert seed.input_value() == "7"


def _backend_launch_tab(page) -> None:
    page.get_by_role("tab", name="Launch a run").click()
    page.locator('[data-testid="stSlider"]').filter(has_text="Partial FC sample rate").first.wait_for(
        state="visible", timeout=TIMEOUT_MS)


def _backend_act(page) -> None:
    _backend_launch_tab(page)
    set_slider(page, "Partial FC sample rate", 0.5, timeout=TIMEOUT_MS)


def _backend_config(page) -> str:
    """The launch form's config.json, as the page shows it (inside a collapsed expander)."""
    return page.locator('[data-testid="stJson"]').first.text_content() or ""


def _backend_link_check(page) -> None:
    _backend_launch_tab(page)
    assert slider_value(page, LOSS_SPEC["m3"].title) == 0.3
    assert slider_value(page, "Partial FC sample rate") == 0.5
    config = re.sub(r"\s+", "", _backend_config(page))
    assert '"sample_rate":0.5' in config, config[:2000]
    assert "cosface" in config.lower(), config[:2000]


def _seed_shows(value: int) -> Callable[[Any], None]:
    def check(page) -> None:
        box = page.locator('[data-testid="stNumberInput"]').filter(has_text="seed").locator("input")
        assert box.count() == 1 and box.input_value() == str(value), box.all_inner_texts()
    return check


def _mnist_link_check(page) -> None:
    assert toy_headers(page) == [("CosFace", 0)], toy_headers(page)
    _seed_shows(3)(page)
    kinds = {t.get("type") for t in plotly_data(page, 0)}
    assert "scatter3d" not in kinds, kinds  # dim=2 from the link: the circle, not the sphere


TABLE3_BUDGET = "budget (seconds per model)"


def _table3_train(page) -> None:
    """Press "Train the five models" and wait for its figure (five short trainings)."""
    press(page, "table3:train")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)


def _table3_prepare(page) -> None:
    set_slider(page, TABLE3_BUDGET, 0.5, timeout=TIMEOUT_MS)
    _table3_train(page)


def _table3_act(page) -> None:
    set_slider(page, TABLE3_BUDGET, 1.0, timeout=TIMEOUT_MS)
    _table3_train(page)


def _table3_link_check(page) -> None:
    from arcface_viz.table3 import steps_for

    _seed_shows(3)(page)
    assert f"{steps_for('fig3', 0.5):,} optimizer steps per model" in main_text(page)


SWEEP_SMALL = "x_values=4,64&y_values=0,0.8&steps=50"


def _base(page) -> str:
    u = urlparse(page.url)
    return f"{u.scheme}://{u.netloc}"


def _sweep_prepare(page) -> None:
    """A small map (2 × 2, 50 steps), trained."""
    open_app(page, _base(page), "sweep", SWEEP_SMALL, timeout=TIMEOUT_MS)
    press(page, "sweep:train-button")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)


def _sweep_act(page) -> None:
    page.locator('[data-testid="stRadio"]').filter(has_text="Colour the map by").get_by_text("W-EC (°)").click()
    wait_for_rerun(page, timeout=TIMEOUT_MS)


def _sweep_link_check(page) -> None:
    values = page.locator('[data-testid="stTextInput"] input').evaluate_all("els => els.map(e => e.value)")
    assert values[:2] == ["4,64", "0,0.3"], values
    assert "4 models (2 rows × 2 columns × 1 seed(s)), 100 steps each" in main_text(page)
    _seed_shows(3)(page)


LESSONS: dict[str, Lesson] = {
    "": Lesson(no_controls="the home page explains the family of losses; it has no lesson controls"),
    "target_logit": Lesson(
        act=_slider(CURVES_SPEC["m2"].title, 0.45), chart=0, url_after={"m2": "0.45"},
        link="m2=0.45&m3=0.0&s=30.0&full_range=true",
        sliders={CURVES_SPEC["m2"].title: 0.45, CURVES_SPEC["m3"].title: 0.0, CURVES_SPEC["s"].title: 30.0},
        texts=("Your curve (1, 0.45, 0)",),
    ),
    "decision_margins": Lesson(
        act=_slider(MARGINS_SPEC["phi"].title, 60.0), chart=1, url_after={"phi": "60.0"},
        link="loss=cosface&m3=0.35&phi=120.0",
        sliders={MARGINS_SPEC["m3"].title: 0.35, MARGINS_SPEC["phi"].title: 120.0},
        texts=("CosFace: W1 and W2 120.0° apart",),
    ),
    "toy_training": Lesson(
        act=_slider(TOY_SPEC["classes"].title, 5), chart=0, url_after={"classes": "5"},
        link="dataset=blobs&classes=5&seed=7&loss=cosface&m3=0.15",
        sliders={TOY_SPEC["classes"].title: 5, LOSS_SPEC["m3"].title: 0.15},
        texts=("CosFace: embeddings and class centres",), check_link=_toy_link_check,
    ),
    "explainer": Lesson(
        act=_explainer_next, chart=0, url_after={"step": "2"},
        link="step=6", texts=("6. Training", "Softmax", "ArcFace", "Gap between the closest identities"),
    ),
    "mnist": Lesson(
        act=_slider("training images", 1000), chart=0, url_after={"max_train": "1000"},
        link="loss=cosface&m3=0.2&dim=2&seed=3&max_train=1000",
        sliders={"training images": 1000, LOSS_SPEC["m3"].title: 0.2},
        texts=("CosFace: test images and class centres",), check_link=_mnist_link_check,
    ),
    "sweep": Lesson(
        prepare=_sweep_prepare, act=_sweep_act, chart=0, url_after={"metric": "W-EC"},
        link="loss=cosface&y=m3&x_values=4,64&y_values=0,0.3&steps=100&seed=3", sliders={"steps per model": 100},
        check_link=_sweep_link_check,
    ),
    "table3": Lesson(
        prepare=_table3_prepare, act=_table3_act, chart=0, url_after={"budget": "1.0"},
        link="dataset=fig3&budget=0.5&seed=3&dim=2", sliders={TABLE3_BUDGET: 0.5}, check_link=_table3_link_check,
    ),
    "backend": Lesson(
        act=_backend_act, observe=_backend_config, url_after={"sample_rate": "0.5"},
        link="loss=cosface&m3=0.3&sample_rate=0.5", check_link=_backend_link_check, server="backend",
    ),
}


def lesson_for(url_path: str) -> Lesson | None:
    return LESSONS.get(url_path)


# --- servers ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def backend_env(root: Path) -> Iterator[None]:
    """The backend switched on, with its runs and data kept inside ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARCFACE_VIZ_BACKEND", "1")
        mp.delenv("ARCFACE_VIZ_HOSTED", raising=False)
        mp.setenv("ARCFACE_VIZ_RUNS", str(root / "runs"))
        mp.setenv("ARCFACE_VIZ_DATA_ROOTS", str(root / "data"))
        mp.setenv("ARCFACE_VIZ_DATA", str(root / "data"))
        (root / "data").mkdir(parents=True, exist_ok=True)
        yield


@pytest.fixture(scope="module")
def backend_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served with the training backend switched on (its runs and data in a tmp dir)."""
    root = tmp_path_factory.mktemp("backend")
    with backend_env(root), serve_app(root / "server.log") as base:
        yield base


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """servers("app") or servers("backend"): the base URL of that server (started on first use)."""
    return lambda kind: request.getfixturevalue("app_server" if kind == "app" else "backend_server")


def new_page(browser, *, viewport: dict | None = None):
    context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
    context.set_default_timeout(helpers.DEFAULT_TIMEOUT_MS)
    return context, context.new_page()


ROWS = [pytest.param(row[2], page_name(row), id=page_name(row)) for row in PAGES]


# --- every page: a control changes the figure, a shared link restores the state ---------------------------


def _lesson_controls(page) -> list[str]:
    """The lesson controls on the page (sliders, selects, number inputs, radios, multiselects), by label."""
    sel = ", ".join(f'[data-testid="{t}"]' for t in ("stSlider", "stSelectbox", "stNumberInput", "stRadio",
                                                     "stMultiSelect"))
    return page.locator(sel).locator('[data-testid="stWidgetLabel"]').all_inner_texts()


def _generic_slider(page, url_path: str) -> tuple[str, float]:
    """The first enabled slider of a page without a case, and a value one step away from its own."""
    for widget in page.locator('[data-testid="stSlider"]').all():
        thumb = widget.locator('input[type="range"]').first
        if thumb.is_disabled():
            continue
        label = widget.locator('[data-testid="stWidgetLabel"]').inner_text().strip()
        cur, lo, hi, step = thumb.evaluate("el => [+el.value, +el.min, +el.max, +(el.step || 1)]")
        target = cur + step if cur + step <= hi + 1e-9 else cur - step
        if lo - 1e-9 <= target:
            return label, round(target, 10)
    pytest.fail(f"/{url_path} has no case in LESSONS (tests/browser/test_browser_lessons.py) and no enabled "
                "slider for the generic check: add a Lesson that says how to change its figure", pytrace=False)


@pytest.mark.parametrize("url_path, name", ROWS)
def test_a_control_changes_the_figure(servers, page, url_path, name):
    lesson = lesson_for(url_path)
    base = servers(lesson.server if lesson else "app")
    open_app(page, base, served_path(url_path), timeout=TIMEOUT_MS)
    assert_no_errors(page)
    if lesson and lesson.no_controls:
        controls = _lesson_controls(page)
        assert controls == [], f"/{url_path} now has controls {controls}: give it a Lesson ({lesson.no_controls})"
        screenshot(page, f"lesson-{name}-opened")
        return
    if lesson is None:  # a page added since: its first slider, and any figure
        label, value = _generic_slider(page, url_path)
        before = [plotly_data(page, i) for i in range(plotly_count(page))]
        assert before, f"/{url_path} has no plotly figure whose change the generic check could see"
        set_slider(page, label, value, timeout=TIMEOUT_MS)
        wait_until(f"a figure of /{url_path} changes after moving {label!r}",
                   lambda: [plotly_data(page, i) for i in range(len(before))] != before, page)
        assert slider_value(page, label) == value
    else:
        if lesson.prepare:
            lesson.prepare(page)
        before = lesson.observe(page) if lesson.observe else plotly_data(page, lesson.chart)
        lesson.act(page)
        if lesson.observe:
            wait_until(f"what /{url_path} shows changes", lambda: lesson.observe(page) != before, page)
        else:
            wait_for_plotly_change(page, lesson.chart, before, timeout=TIMEOUT_MS)
        query = query_of(page)
        for k, v in lesson.url_after.items():
            assert query.get(k) == v, f"the URL should hold {k}={v} after the change: {page.url}"
    assert_no_errors(page)
    screenshot(page, f"lesson-{name}-changed")


@pytest.mark.parametrize("url_path, name", ROWS)
def test_a_shared_link_restores_the_state(browser, servers, page, url_path, name):
    lesson = lesson_for(url_path)
    base = servers(lesson.server if lesson else "app")
    if lesson is None:  # generic: the link the page leaves after a change reopens that value elsewhere
        context, first = new_page(browser)
        try:
            open_app(first, base, served_path(url_path), timeout=TIMEOUT_MS)
            label, value = _generic_slider(first, url_path)
            set_slider(first, label, value, timeout=TIMEOUT_MS)
            link = urlparse(first.url)
        finally:
            context.close()
        lesson = Lesson(link=link.query, sliders={label: value})
    open_app(page, base, served_path(url_path), lesson.link, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    if lesson.no_controls:  # nothing to restore: the address opens the page itself
        assert urlparse(page.url).path.strip("/") == served_path(url_path)
        assert _lesson_controls(page) == []
    query = query_of(page)
    for k, v in parse_qs(lesson.link).items():
        assert query.get(k) == v[-1], f"the link's {k}={v[-1]} should stay in the URL: {page.url}"
    for label, value in lesson.sliders.items():
        assert slider_value(page, label) == pytest.approx(value), label
    if lesson.texts:
        shown = _figure_texts(page)
        for text in lesson.texts:
            assert text in shown, f"{text!r} is not shown on /{url_path}?{lesson.link}"
    if lesson.check_link:
        lesson.check_link(page)
    assert_no_errors(page)
    screenshot(page, f"lesson-{name}-shared-link")


def test_every_registry_page_has_a_case():
    """A new page is driven by the generic check; this names the pages that rely on it, so that the
    report shows them (the generic check itself runs in the two tests above)."""
    generic = [row[2] for row in PAGES if row[2] not in LESSONS]
    stale = [k for k in LESSONS if k not in {row[2] for row in PAGES}]
    assert not stale, f"LESSONS has cases for pages no longer in the registry: {stale}"
    if generic:
        print(f"pages driven by the generic slider check: {generic}")


# --- live training ------------------------------------------------------------------------------------------


LIVE_RUNS = {  # page: (link, Train/Pause key, steps per frame in the link)
    "toy_training": ("steps_per_frame=10", TOY_TRAIN, 10),
    "mnist": ("dataset=digits&dim=2&steps_per_frame=5", "mnist:train", 5),
}


@pytest.mark.parametrize("url_path", list(LIVE_RUNS))
def test_live_training_trains_and_pauses(page, app_server, url_path):
    """Train starts a live run whose figure and step counter move; Pause is answered promptly, and the
    paused page stays still."""
    link, train, per_frame = LIVE_RUNS[url_path]
    open_app(page, app_server, url_path, link, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    assert toy_steps(page) == [0]
    start = plotly_data(page, 0)

    button(page, train).click()
    wait_for_button_label(page, train, "Pause", timeout=TIMEOUT_MS)
    first = wait_for_plotly_change(page, 0, start, timeout=TIMEOUT_MS)
    step_first = wait_until("the header shows training steps", lambda: max(toy_steps(page) or [0]), page)
    page.wait_for_timeout(2_000)  # two snapshots a couple of seconds apart, both while training
    second = wait_for_plotly_change(page, 0, first, timeout=TIMEOUT_MS)
    step_second = wait_until("the step counter goes on increasing",
                             lambda: (s := max(toy_steps(page) or [0])) > step_first and s, page)
    assert second != first and step_second > step_first
    assert step_second % per_frame == 0  # the link's steps per frame

    button(page, train).click()
    wait_for_button_label(page, train, "Train", timeout=30_000)  # Pause answered within seconds, not starved
    wait_for_idle(page, timeout=TIMEOUT_MS)  # a paused page settles: no more fragment reruns
    paused_step, paused_data = toy_steps(page), plotly_data(page, 0)
    assert paused_step[0] >= step_second
    page.wait_for_timeout(3_000)  # watch the paused page: nothing may move
    assert toy_steps(page) == paused_step, "the step counter went on after Pause"
    assert plotly_data(page, 0) == paused_data, "the embedding figure went on changing after Pause"
    assert query_of(page).get("steps_per_frame") == str(per_frame)
    assert_no_errors(page)
    screenshot(page, f"lesson-{url_path}-paused")


def test_explainer_next_and_previous_move_through_the_story(page, app_server):
    open_app(page, app_server, "explainer", timeout=TIMEOUT_MS)
    assert_no_errors(page)
    assert query_of(page).get("step") == "1"
    assert "1. The problem" in headings(page)
    before = plotly_data(page, 0)

    press(page, "explainer:next")
    assert query_of(page).get("step") == "2"
    assert "2. Softmax" in headings(page)
    assert "Step 2 of 9" in main_text(page)
    wait_for_plotly_change(page, 0, before, timeout=TIMEOUT_MS)
    assert "Softmax: W1·x + b1 = W2·x + b2" in plotly_layout(page, 0)["title"]

    press(page, "explainer:prev")
    assert query_of(page).get("step") == "1"
    assert "1. The problem" in headings(page)
    assert_no_errors(page)

    open_app(page, app_server, "explainer", "step=9", timeout=TIMEOUT_MS)
    assert "9. After ArcFace" in headings(page)
    assert button(page, "explainer:next").is_disabled()  # the last step
    screenshot(page, "lesson-explainer-last-step")


# --- presenter mode ------------------------------------------------------------------------------------------


def _presentation(page) -> dict[str, Any]:
    layout = plotly_layout(page, 0)
    widths = [(t.get("line") or {}).get("width") for t in plotly_data(page, 0)]
    return {
        "sidebar_collapsed": page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed"),
        "sidebar_width": (page.locator('[data-testid="stSidebar"]').bounding_box() or {}).get("width", 0),
        "font": layout["font_size"], "title_font": layout["title_font_size"],
        "line": max((w for w in widths if w), default=0),
        "h1": page.locator('[data-testid="stHeading"] h1').first.evaluate(
            "el => parseFloat(getComputedStyle(el).fontSize)"),
    }


def test_presenter_mode_collapses_the_sidebar_and_enlarges_the_charts(browser, app_server):
    shown = {}
    for present in (False, True):
        context, page = new_page(browser)
        try:
            open_app(page, app_server, "target_logit", "present=true" if present else "", timeout=TIMEOUT_MS)
            assert_no_errors(page)
            shown[present] = _presentation(page)
            if present:
                assert query_of(page).get("present") == "true"  # it stays in the link to share
                screenshot(page, "lesson-target_logit-presenter")
        finally:
            context.close()
    normal, projector = shown[False], shown[True]
    assert normal["sidebar_collapsed"] == "false" and normal["sidebar_width"] > 100, normal
    assert projector["sidebar_collapsed"] == "true" and projector["sidebar_width"] < 1, projector
    assert projector["font"] > normal["font"], (normal, projector)
    assert projector["title_font"] > normal["title_font"], (normal, projector)
    assert projector["line"] > normal["line"], (normal, projector)
    assert projector["h1"] > normal["h1"], (normal, projector)


# --- two visitors at once ---------------------------------------------------------------------------------------


def test_two_visitors_train_at_once_without_sharing_state(browser, app_server):
    """Two browser sessions on one server, different links, both training at the same time: each page
    shows its own loss, data and step rhythm, and pausing one leaves the other training."""
    visitors = {
        "a": ("loss=arcface&dataset=fig3&seed=1&steps_per_frame=10", "ArcFace", 10),
        "b": ("loss=cosface&m3=0.15&dataset=blobs&classes=5&seed=2&steps_per_frame=3", "CosFace", 3),
    }
    opened = {}
    try:
        for who, (query, _, _) in visitors.items():
            context, page = new_page(browser, viewport={"width": 1200, "height": 900})
            opened[who] = (context, page)
            open_app(page, app_server, "toy_training", query, timeout=TIMEOUT_MS)
            assert_no_errors(page)
        a, b = opened["a"][1], opened["b"][1]
        for page in (a, b):
            button(page, TOY_TRAIN).click()
        for page in (a, b):
            wait_for_button_label(page, TOY_TRAIN, "Pause", timeout=TIMEOUT_MS)
        for who, page in (("a", a), ("b", b)):
            wait_until(f"visitor {who} trains", lambda page=page: max(toy_steps(page) or [0]) > 0, page)

        # Visitor a pauses; b goes on training; a stays where it paused.
        button(a, TOY_TRAIN).click()
        wait_for_button_label(a, TOY_TRAIN, "Train", timeout=TIMEOUT_MS)
        wait_for_idle(a, timeout=TIMEOUT_MS)
        a_paused = toy_steps(a)
        b_then = max(toy_steps(b) or [0])
        wait_until("visitor b goes on training after a paused",
                   lambda: max(toy_steps(b) or [0]) > b_then + 3, b)
        assert button(b, TOY_TRAIN).inner_text().strip().endswith("Pause")
        assert toy_steps(a) == a_paused

        button(b, TOY_TRAIN).click()
        wait_for_button_label(b, TOY_TRAIN, "Train", timeout=TIMEOUT_MS)
        wait_for_idle(b, timeout=TIMEOUT_MS)
        for who, page in (("a", a), ("b", b)):
            query, label, per_frame = visitors[who]
            headers = toy_headers(page)
            assert len(headers) == 1 and headers[0][0] == label, (who, headers)
            assert headers[0][1] > 0 and headers[0][1] % per_frame == 0, (who, headers)
            assert label in plotly_layout(page, 0)["title"], (who, plotly_layout(page, 0)["title"])
            shown = query_of(page)
            for k, v in parse_qs(query).items():
                assert shown.get(k) == v[-1], (who, k, page.url)
            assert_no_errors(page)
        # b's five classes against a's eight: each page draws its own data set.
        classes = {who: sum(1 for t in plotly_data(page, 0) if t.get("mode") == "markers" and t.get("x"))
                   for who, page in (("a", a), ("b", b))}
        assert classes["a"] != classes["b"], classes
        screenshot(b, "lesson-toy_training-second-visitor")
    finally:
        for context, _ in opened.values():
            context.close()


# --- the gallery's extra states ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    name: str
    url_path: str
    query: str
    presses: tuple[str, ...] = ()  # keys of the buttons to press, in order, before the picture
    server: str = "app"
    expect: tuple[str, ...] = ()  # texts the page must show (figure titles, headings, main text)


GALLERY = [
    # compare mode opens on the paper's Fig. 3: Softmax against ArcFace in 2-D, here after the explainer's 1,000 steps
    State("toy_training-compare", "toy_training", "compare=true&steps_per_frame=200", presses=(TOY_STEP,) * 5,
          expect=("Softmax", "ArcFace", "Gap between the closest identities", "class weights W")),
    State("toy_training-sphere-3d", "toy_training", "dataset=sphere&dim=3&classes=6&steps_per_frame=150",
          presses=(TOY_STEP,) * 3),
    State("explainer-step6", "explainer", "step=6",
          expect=("6. Training", "Softmax", "ArcFace", "Gap between the closest identities",
                  "ArcFace leaves an evident gap")),
    State("explainer-step5-presenter", "explainer", "step=5&present=true", expect=("5. ArcFace",)),
    State("decision_margins-cosface", "decision_margins", "loss=cosface&m3=0.35",
          expect=("CosFace: W1 and W2 90.0° apart",)),
    State("decision_margins-softmax", "decision_margins", "loss=softmax&bias=0.3&norm_ratio=1.3",
          expect=("Softmax: W1·x + b1 = W2·x + b2",)),
    State("target_logit-full_range", "target_logit", "full_range=true&monotonic=true"),
    State("mnist-trained-2d", "mnist", "dim=2&max_train=5000&steps_per_frame=100", presses=("mnist:step",) * 3,
          expect=("ArcFace: test images and class centres",)),
    State("table3-trained", "table3", "dataset=fig3&budget=1.0&dim=16", presses=("table3:train",),
          expect=("Ours (bars) and the paper",)),
    State("backend-launch", "backend", "", server="backend"),
]
GALLERY = [s for s in GALLERY if s.url_path in {row[2] for row in PAGES}]  # pages that left the registry


@pytest.mark.gallery
@pytest.mark.parametrize("state", GALLERY, ids=[s.name for s in GALLERY])
def test_gallery_state(servers, page, state):
    """The gallery's interesting states open without errors and show what they are about."""
    open_app(page, servers(state.server), state.url_path, state.query, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    for key in state.presses:
        before = toy_steps(page)
        press(page, key)
        if key.endswith(":step"):
            after = toy_steps(page)
            assert after and all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    if state.url_path == "table3" and state.presses:
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=TIMEOUT_MS)
        wait_for_idle(page, timeout=TIMEOUT_MS)
    if state.server == "backend":
        _backend_launch_tab(page)
    shown = _figure_texts(page) + "\n" + "\n".join(plotly_titles(page))
    for text in state.expect:
        assert text in shown, f"{text!r} is not shown in the state {state.name}"
    assert_no_errors(page)
    path = screenshot(page, state.name)
    assert path.stat().st_size > 10_000


# --- the Training runs page imports an arcface_torch config --------------------------------------------------------


def test_backend_imports_an_arcface_torch_config(servers, page):
    """Paste arcface_torch's wf12m_conflict_r50_pfc03_filter04.py into the launch tab's import box: the form
    shows CosFace 0.4 with the inter-class filter 0.4 and Partial FC 0.3, and the config.json preview too."""
    from tests.arcface_torch_configs import CONFIGS

    open_app(page, servers("backend"), "backend", "", timeout=TIMEOUT_MS)
    _backend_launch_tab(page)
    page.get_by_text("Import an insightface arcface_torch config").click()
    box = page.locator(".st-key-backend-import_text textarea")
    box.fill(CONFIGS["wf12m_conflict_r50_pfc03_filter04"])
    box.press("Control+Enter")  # commit the text area's value before the button's rerun
    wait_for_idle(page, after_input=True, timeout=TIMEOUT_MS)
    button(page, "backend:import").click()
    page.get_by_text("Imported pasted_config.py (iresnet50 + cosface) into the form").wait_for(timeout=TIMEOUT_MS)
    wait_for_idle(page, timeout=TIMEOUT_MS)
    assert_no_errors(page)
    assert slider_value(page, LOSS_SPEC["m3"].title) == 0.4
    assert slider_value(page, LOSS_SPEC["interclass_filtering_threshold"].title) == 0.4
    assert slider_value(page, "Partial FC sample rate") == 0.3
    config = re.sub(r"\s+", "", _backend_config(page))
    assert '"interclass_filtering_threshold":0.4' in config and '"lr_schedule":"polynomial_lr_warmup"' in config
    path = screenshot(page, "backend-import")
    assert path.stat().st_size > 10_000
