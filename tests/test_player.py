"""The live frames player (pages/_player.py): the frames it is sent, its assets, its template, the frames a
LiveSession moves through (LiveSession.advance(visit=...)), and what the toy page sends it."""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import numpy as np
import plotly
import pytest
import streamlit  # noqa: F401 - sets plotly's default template to Streamlit's, as in the app
from app_helpers import button, frame_items, open_page, player_args, player_frames, player_keys, player_status

from arcface_viz.live import PACER, LiveSession, Run, watch
from arcface_viz.plots.style import default_template, wire
from arcface_viz.training import build_toy_trainer
from pages import _player
from pages._player import encode, player_template

# --- encode -------------------------------------------------------------------------------------


def test_encode_parses_and_strips_only_the_app_default_template():
    default = {"data": [{"type": "scatter", "x": np.arange(3.0), "y": [1, 2, 3]}],
               "layout": {"title": {"text": "a"}, "template": default_template()}}
    copied = {"data": [], "layout": {"template": json.loads(json.dumps(default_template()))}}  # equal, not the same
    own = {"data": [], "layout": {"template": {"layout": {"font": {"size": 99}}}, "height": 300}}
    none = {"data": [], "layout": {"width": 200}}
    rows = [[[{"md": "**ArcFace** — step 20"}]],
            [[{"fig": default, "key": "emb-0"}, {"caption": "gap", "help": "why"}],
             [{"fig": copied, "key": "emb-1"}, {"html": "<b>noisy</b>"}]],
            [[{"heading": "Feature norms"}, {"fig": own, "key": "theta-0"}, {"fig": none, "key": "curves-0"}]]]
    before = copy.deepcopy(rows)
    out = json.loads(encode(7, rows))
    assert set(out) == {"n", "rows"} and out["n"] == 7
    items = frame_items(out)
    assert [next(iter(i)) for i in items] == ["md", "fig", "caption", "fig", "html", "heading", "fig", "fig"]
    assert items[0] == {"md": "**ArcFace** — step 20"}
    assert items[2] == {"caption": "gap", "help": "why"} and items[4] == {"html": "<b>noisy</b>"}
    assert items[5] == {"heading": "Feature norms"}
    figs = {i["key"]: i["fig"] for i in items if "fig" in i}
    assert "template" not in figs["emb-0"]["layout"] and figs["emb-0"]["layout"]["title"] == {"text": "a"}
    assert figs["emb-0"]["data"][0]["x"] == [0.0, 1.0, 2.0]  # numpy arrays encoded
    assert "template" not in figs["emb-1"]["layout"]  # an equal copy of the default is stripped too
    assert figs["theta-0"]["layout"] == {"template": {"layout": {"font": {"size": 99}}}, "height": 300}  # kept
    assert figs["curves-0"]["layout"] == {"width": 200}
    # the caller's figures are left as they were (a frame's figures are built once and shared)
    assert rows[1][0][0]["fig"]["layout"]["template"] == default_template()
    assert json.dumps(rows, default=list) == json.dumps(before, default=list)


def test_encode_strips_the_template_that_wire_adds():
    fig = wire({"data": [{"type": "scatter", "x": np.arange(4.0), "y": np.ones(4)}], "layout": {"height": 200}})
    assert fig["layout"]["template"] == default_template()
    (item,) = frame_items(json.loads(encode(0, [[[{"fig": fig, "key": "emb-0"}]]])))
    assert item["key"] == "emb-0" and item["fig"]["layout"] == {"height": 200}
    assert item["fig"]["data"][0]["type"] == "scatter"


# --- assets and template ------------------------------------------------------------------------


@pytest.fixture
def fresh_assets(tmp_path, monkeypatch):
    """assets() made afresh in a cache folder of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _player.assets.cache_clear()
    yield tmp_path / "arcface-viz"
    _player.assets.cache_clear()  # later callers make (or find) the real one


def test_assets_folder_holds_the_page_template_and_plotly(fresh_assets):
    folder = _player.assets()
    assert folder.parent == fresh_assets
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "plotly.min.js", "plotly.min.js.gz",
                                                        "template.json"]
    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert gzip.decompress((folder / "plotly.min.js.gz").read_bytes()) == plotly_js
    assert (folder / "plotly.min.js").read_bytes() == plotly_js
    assert (folder / "index.html").read_bytes() == _player.SOURCE.read_bytes()
    assert json.loads((folder / "template.json").read_text()) == player_template()
    assert _player.assets() == folder
    _player.assets.cache_clear()  # another process (or a restart) finds the folder made before
    assert _player.assets() == folder
    assert [p.name for p in fresh_assets.iterdir()] == [folder.name]  # no half-made folder left behind


def test_player_template_has_no_streamlit_placeholder_colours_and_the_apps_look():
    placeholders = [f'"#0000{i:02d}"' for i in range(1, 41)]
    default = json.dumps(default_template())
    assert sum(p in default for p in placeholders) > 10  # Streamlit's template, which the test is about
    before = copy.deepcopy(default_template())
    template = player_template()
    text = json.dumps(template)
    assert [p for p in placeholders if p in text] == []
    layout = template["layout"]
    assert "Source Sans" in layout["font"]["family"] and layout["font"]["color"].startswith("#")
    assert layout["paper_bgcolor"] == layout["plot_bgcolor"] == "#ffffff"
    assert set(template) == set(default_template())  # data and layout, as the default has
    assert default_template() == before  # the app's template itself unchanged


# --- LiveSession.advance(visit=...) ---------------------------------------------------------------

STEPS = 10
SETTINGS = {"dataset": "fig3", "dim": 2, "loss": "arcface", "seed": 5, "samples_per_class": 40}


def _build() -> list:
    return [build_toy_trainer(dict(SETTINGS))]


def _recorder(sess: LiveSession):
    seen: list[tuple[int, int, int]] = []

    def visit(view: LiveSession, left: int) -> None:
        assert view is sess
        assert view.cursor in view.kept  # the frame's snapshots are kept while it is visited
        seen.append((view.cursor, left, view.frame.snaps[0].step))

    return seen, visit


def test_advance_visits_every_frame_it_moves_through():
    sess = LiveSession(_build(), {}, max_steps=60)
    seen, visit = _recorder(sess)
    sess.advance(STEPS, visit=visit)
    assert seen == [(1, 0, 10)]
    seen.clear()
    sess.advance(STEPS, frames=3, visit=visit)  # from 1: the grid of 2 lands on frame 4
    assert seen == [(2, 2, 20), (3, 1, 30), (4, 0, 40)]
    seen.clear()
    sess.advance(STEPS, visit=None)  # without a callback, as before
    assert sess.cursor == 5 and not seen
    sess.running = True
    sess.advance(STEPS, frames=4, visit=visit)  # from 5 to 8 would pass the limit (60 steps): stops at 6
    assert seen == [(6, 2, 60)] and sess.finished and not sess.running
    seen.clear()
    sess.advance(STEPS, frames=2, visit=visit)  # finished: nothing moves, nothing visited
    assert seen == [] and sess.cursor == 6


def test_advance_visits_frames_replayed_from_a_shared_run_too():
    def make() -> Run:
        return Run(_build(), max_steps=200, factory=_build)

    key = ("test-player-visit", 1)
    a, b = watch(key, make, {}), watch(key, make, {})
    assert a.run is b.run
    for _ in range(6):  # a trains frames 1…6
        a.advance(STEPS)
    for n in (1, 2, 3):  # a drew frames 1…3
        a.run.memo(("figs", n), lambda n=n: n, frame=n)
    seen, visit = _recorder(b)
    b.advance(STEPS, frames=2, share=True, visit=visit)  # drawn frames up to 2 × 2 ahead: the furthest is 3
    assert seen == [(1, 2, 10), (2, 1, 20), (3, 0, 30)]
    seen.clear()
    b.advance(STEPS, frames=5, visit=visit)  # onto the grid of 4: 4…6 replayed (trained by a), 7 and 8 trained
    assert seen == [(4, 4, 40), (5, 3, 50), (6, 2, 60), (7, 1, 70), (8, 0, 80)]
    assert b.run.head == 8 and a.cursor == 6


# --- the toy page -------------------------------------------------------------------------------

PAGE = "pages/toy_training.py"
K = 5  # steps_per_frame
QUERY = {"steps_per_frame": str(K), "samples": "60", "seed": "11"}  # settings no other test trains


def _check_frame(frame: dict) -> None:
    """A frame's status line and figures describe the same frame: step n × steps_per_frame."""
    n, items = frame["n"], frame_items(frame)
    step = n * K
    assert items[0]["md"].startswith(f"**ArcFace** — step {step:,} · loss "), (n, items[0])
    keys = [i["key"] for i in items if "fig" in i]
    assert keys == ["emb-0", "theta-0", "curves-0"], keys
    figs = {i["key"]: i["fig"] for i in items if "fig" in i}
    assert all("template" not in f["layout"] for f in figs.values())  # the player adds its own
    if n:
        names = [t.get("name", "") for t in figs["theta-0"]["data"]]
        assert any(name.startswith(f"now (step {step})") for name in names), (n, names)


def test_toy_page_sends_one_still_frame_then_every_frame_it_plays(monkeypatch):
    at = open_page(PAGE, QUERY)
    args = player_args(at)
    assert args["playing"] is False and args["interval"] > 0 and args["max_queue"] >= 1
    (frame,) = player_frames(at)
    assert frame["n"] == 0
    assert frame_items(frame)[0]["md"].startswith("**ArcFace** — step 0 ")
    _check_frame(frame)
    run = args["run"]

    sent = []
    button(at, "Train").click().run()  # the first frame of a visitor who pressed Train: one on
    assert not at.exception, at.exception
    assert any(b.label == "Pause" for b in at.button)
    sent.append(player_args(at))
    # a late turn: four intervals passed since the last frame, all four frames trained and sent
    monkeypatch.setattr(PACER, "frames", lambda since, interval, now=None: (4, 4))
    for _ in range(3):  # the fragment's reruns
        at.run()
        assert not at.exception, at.exception
        sent.append(player_args(at))
    monkeypatch.undo()
    for _ in range(2):
        at.run()
        assert not at.exception, at.exception
        sent.append(player_args(at))

    assert all(s["playing"] is True and s["run"] == run for s in sent)
    frames = [json.loads(s["frames"]) for s in sent]
    assert [f["n"] for f in frames[0]] == [1]
    assert [[f["n"] for f in fs] for fs in frames[1:4]] == [[2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    ns = [f["n"] for fs in frames for f in fs]
    assert all(a < b for a, b in zip(ns, ns[1:], strict=False)), ns
    for fs in frames:
        for f in fs:
            _check_frame(f)
    assert player_status(at)[0].startswith(f"**ArcFace** — step {ns[-1] * K:,} ")  # the last frame is shown

    button(at, "Pause").click().run()
    args = player_args(at)
    (still,) = player_frames(at)
    assert args["playing"] is False and args["run"] == run and still["n"] == ns[-1]
    _check_frame(still)


def test_norm_and_state_figures_reach_the_player_without_the_template():
    at = open_page(PAGE, {"loss": "adaface", "dataset": "blobs", "samples": "60"})
    button(at, "Step").click().run()
    assert not at.exception, at.exception
    keys = player_keys(at)
    assert keys == ["emb-0", "norms-0", "theta-0", "curves-0", "state-0"], keys
    frame = player_frames(at)[-1]
    assert all("template" not in i["fig"]["layout"] for i in frame_items(frame) if "fig" in i)


def test_export_buttons_offer_each_figure_of_the_paused_frame_as_html():
    """With the export buttons on, a paused toy page offers every figure of the player's frame on screen as an
    interactive HTML file (titled by the figure), as the other pages do under each chart; none while off."""
    at = open_page("pages/toy_training.py", {"dataset": "blobs", "samples": "40"})
    items = [i for i in frame_items(player_frames(at)[-1]) if "fig" in i]
    assert not [d for d in at.get("download_button") if d.proto.label.endswith("(HTML)")
                and "animation" not in d.proto.label]
    [t for t in at.toggle if t.label == "Export buttons"][0].set_value(True).run()
    html = [d for d in at.get("download_button") if "animation" not in d.proto.label]
    assert len(html) == len(items) >= 3

    def title(item: dict) -> str:  # the figure's title as text, or its key where it has none (the curves)
        t = item["fig"]["layout"].get("title")
        return re.sub(r"<[^>]+>", "", (t.get("text") if isinstance(t, dict) else t) or item["key"])

    assert [d.proto.label for d in html] == [f"{title(i)} (HTML)" for i in items]
    assert any("embeddings" in d.proto.label for d in html)


def test_mnist_page_plays_its_frames_while_training_and_draws_clickable_charts_when_paused(monkeypatch):
    """The MNIST lesson trains through the player (every frame: progress, status line, figures, confusion table,
    all of one frame) and, paused, draws Streamlit's own charts, which take clicks."""
    page, query = "pages/mnist.py", {"dataset": "digits", "dim": "2", "steps_per_frame": "5"}
    at = open_page(page, query)
    assert player_args(at) is None and at.get("plotly_chart")  # paused: clickable charts, no player
    button(at, "Train").click().run()
    monkeypatch.setattr(PACER, "frames", lambda since, interval, now=None: (3, 3))
    at.run()
    assert not at.exception, at.exception
    args = player_args(at)
    frames = player_frames(at)
    assert args["playing"] is True and [f["n"] for f in frames] == [2, 3, 4]
    for f in frames:
        items = frame_items(f)
        progress = next(i for i in items if "progress" in i)
        status = next(i["md"] for i in items if "md" in i)
        step = f["n"] * 5
        assert status.startswith(f"**ArcFace** — step {step} ")
        spe = 11  # digits: 1,437 training images in batches of 128
        assert progress["text"].startswith(f"epoch {step // spe + 1}: step {step % spe} of {spe} ")
        assert abs(progress["progress"] - (step % spe) / spe) < 1e-9
        keys = [i["key"] for i in items if "fig" in i]
        assert keys[:1] == ["emb-0"] and {"curves-0", "theta-0", "conf-0"} <= set(keys)
    monkeypatch.undo()
    button(at, "Pause").click().run()
    assert not at.exception and player_args(at) is None
    assert at.get("plotly_chart")[0].proto.selection_mode  # clicks come back again
