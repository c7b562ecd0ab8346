"""The live frames player: a custom component that shows the frames of a live run in the browser.

One fragment rerun sends the frames its visitor has not yet seen (``frames``: each frame's status lines,
figures and captions, encoded once per frame of a run for every visitor who shows it), and the browser plays them
one ``interval`` apart, drawing each figure in place with ``Plotly.react``.  Two things follow:

- a busy server, whose reruns come late, still shows every frame it sends: the screen updates as often as frames
  are made, not as often as the server manages a rerun (issue 11, bench/bench_classroom.py);
- a figure is updated, not thrown away and drawn again: ``st.plotly_chart`` gives a figure with new data a new
  element, which the browser builds from scratch (a blank chart for a moment, on every frame).

The browser code is ``pages/player/index.html`` (no build step).  plotly.js comes from the installed plotly
package, stored gzipped beside it (the browser unpacks it: Streamlit would compress 4.8 MB again for every
visitor who loads the page).  The status lines and figures of the frame on screen are what the player shows, so
the status line always describes the figures beside it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).parent / "player" / "index.html"

# Streamlit's plotly template names its colours by placeholders that its own chart element replaces for the
# theme; the player's figures get the light theme's colours (the app's theme is light: .streamlit/config.toml).
_LIGHT = {
    **{f"#0000{i:02d}": c for i, c in enumerate(
        ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab", "#29b09d", "#7defa1", "#ff8700", "#ffd16a", "#6d3fc0",
         "#d5dae5"], start=1)},
    **{f"#0000{i:02d}": c for i, c in enumerate(
        ["#e4f5ff", "#c7ebff", "#a6dcff", "#83c9ff", "#60b4ff", "#3d9df3", "#1c83e1", "#0068c9", "#0054a3",
         "#004280"], start=11)},
    **{f"#0000{i:02d}": c for i, c in enumerate(
        ["#7d353b", "#bd4043", "#ff4b4b", "#ff8c8c", "#ffc7c7", "#a6dcff", "#60b4ff", "#1c83e1", "#0054a3",
         "#004280"], start=21)},
    "#000032": "#29b09d", "#000033": "#ff2b2b", "#000034": "#0068c9", "#000036": "#a3a8b8", "#000037": "#31333f",
    "#000038": "#ffffff", "#000039": "#e6eaf1", "#000040": "#f0f2f6",
}
_GRAY30, _GRAY70, _GRAY90 = "#e6eaf1", "#808495", "#262730"
_AXIS = {"zerolinecolor": _GRAY30, "gridcolor": _GRAY30, "tickcolor": _GRAY30, "automargin": True,
         "tickfont": {"color": _GRAY70, "size": 12}, "title": {"font": {"color": _GRAY70, "size": 14}}}
_LAYOUT = {  # the look Streamlit's chart element gives a figure in the light theme: text, axes, legend, background
    "font": {"family": '"Source Sans Pro", "Source Sans 3", sans-serif', "color": _GRAY70, "size": 12},
    "title": {"font": {"size": 16, "color": "#31333f"}, "xanchor": "left", "x": 0, "pad": {"l": 4}},
    "legend": {"font": {"size": 12, "color": _GRAY90}, "valign": "top", "borderwidth": 0},
    "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
    "xaxis": {**_AXIS, "showgrid": False, "zeroline": False, "title": {**_AXIS["title"], "standoff": 20}},
    "yaxis": {**_AXIS, "ticklabelposition": "outside", "title": {**_AXIS["title"], "standoff": 24}},
    "margin": {"pad": 8, "r": 0, "l": 0},
    "hoverlabel": {"bgcolor": "#ffffff", "font": {"color": _GRAY70, "size": 12}},
}


def player_template() -> dict[str, Any]:
    """The template the player gives a figure that carries the app's default one (plotly's template with
    Streamlit's placeholder colours made the light theme's)."""
    from arcface_viz.plots.style import default_template

    text = json.dumps(default_template())
    for placeholder, colour in _LIGHT.items():
        text = text.replace(f'"{placeholder}"', f'"{colour}"')
    out = json.loads(text)
    out["layout"] = {**out.get("layout", {}), **_LAYOUT}
    return out


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(base) / "arcface-viz"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:  # a read-only home (some hosts): the temporary directory
        return Path(tempfile.gettempdir()) / "arcface-viz"


@cache
def assets() -> Path:
    """The component's folder: index.html, the figures' template and plotly.js (gzipped, and plain for a
    browser without DecompressionStream), made once per version of each (several servers may race: each writes
    its own folder and renames it into place)."""
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    template = json.dumps(player_template()).encode()
    html = SOURCE.read_bytes()
    tag = hashlib.sha256(html + template + plotly.__version__.encode()).hexdigest()[:16]
    root = _cache_root()
    folder = root / f"player-{tag}"
    if (folder / "index.html").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="player-", dir=root))
    (work / "template.json").write_bytes(template)
    shutil.copyfile(plotly_js, work / "plotly.min.js")
    (work / "plotly.min.js.gz").write_bytes(gzip.compress(plotly_js.read_bytes(), compresslevel=9, mtime=0))
    (work / "index.html").write_bytes(html)  # last: its presence marks a complete folder
    try:
        work.rename(folder)
    except OSError:  # another server was first
        shutil.rmtree(work, ignore_errors=True)
    return folder


@cache
def _component() -> Any:
    import streamlit.components.v1 as components

    return components.declare_component("player", path=str(assets()))


def strip_template(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without the app's default template (the player adds its own: it is sent once, not per figure)."""
    from arcface_viz.plots.style import default_template

    layout = spec.get("layout") or {}
    template = layout.get("template")
    if template is not None and (template is default_template() or template == default_template()):
        spec = {**spec, "layout": {k: v for k, v in layout.items() if k != "template"}}
    return spec


def encode(n: int, rows: Sequence[Sequence[Sequence[dict[str, Any]]]]) -> str:
    """Frame ``n`` of a run as the player reads it: rows of columns of items, each item one of
    ``{"md": text}`` (markdown: **bold**, *italic*, `code`), ``{"heading": text}``, ``{"caption": text, "help": text}``,
    ``{"html": text}`` (a caption with inline HTML), ``{"progress": 0…1, "text": text}``, ``{"table": [row dicts]}``,
    ``{"images": [data URIs], "captions": [text]}`` or ``{"fig": figure dict, "key": name}``."""
    import orjson

    rows = [[[{**i, "fig": strip_template(i["fig"])} if "fig" in i else i for i in col] for col in row]
            for row in rows]
    return orjson.dumps({"n": n, "rows": rows}, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def player(frames: Sequence[str], *, key: str, run: str, upto: int, playing: bool, interval: float,
           present: bool = False, max_queue: int = 12) -> None:
    """Show ``frames`` (from :func:`encode`, oldest first): while ``playing``, after the frames the browser still
    has queued, one every ``interval`` seconds (at most ``max_queue`` waiting: older ones are skipped); when not
    playing, the last one at once.  ``run``: the run the frames belong to (another run's frames start afresh);
    ``upto``: the newest frame's index (what :func:`track_delivery` reads: it comes first in the arguments);
    ``present``: the text in presenter mode's sizes."""
    _component()(upto=upto, run=run, frames="[" + ",".join(frames) + "]", playing=playing, interval=interval,
                 present=present, max_queue=max_queue, key=key, default=None)


_UPTO = re.compile(r'^\{"upto": (-?\d+), "run": "([^"\\]*)"')


def track_delivery() -> None:
    """Once per server: note, for each session, the newest player frame of each run that has left for the browser.

    Why: when the next rerun of a fragment starts, Streamlit drops the fragment's messages it has not yet sent
    (they would be out of date).  A busy server's event loop sends late while reruns queue up behind each other,
    so frames the server moved past never reached the browser (bench/bench_classroom.py saw half of a class's
    frames go).  The player's frames are not out of date: each one is shown.  So a run sends every frame after
    the newest one delivered (:func:`delivered`), and the player skips the frames it already has."""
    from streamlit.runtime.app_session import AppSession

    flush = AppSession.flush_browser_queue
    if getattr(flush, "tracks_player", False):
        return

    def tracked(self: Any) -> list[Any]:
        msgs = flush(self)
        for msg in msgs:
            if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element" \
                    and msg.delta.new_element.WhichOneof("type") == "component_instance":
                m = _UPTO.match(msg.delta.new_element.component_instance.json_args)
                if m:
                    seen = self.__dict__.setdefault("player_delivered", {})
                    seen[m[2]] = max(seen.get(m[2], -1), int(m[1]))
                    cv = self.__dict__.get("player_cv")
                    if cv is not None:
                        with cv:
                            cv.notify_all()
        return msgs

    tracked.tracks_player = True  # type: ignore[attr-defined]
    AppSession.flush_browser_queue = tracked


def _session() -> Any:
    """This script run's AppSession (None outside a server: AppTest, or if Streamlit's internals moved, which
    tests/test_player.py notices)."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None or not Runtime.exists():
            return None
        info = Runtime.instance()._session_mgr.get_active_session_info(ctx.session_id)  # noqa: SLF001
        return None if info is None else info.session
    except Exception:  # noqa: BLE001
        return None


def delivered(run: str) -> int | None:
    """The newest frame of ``run`` that has left this session for its browser (-1: none yet); None where nothing
    is tracked (no server: AppTest), where every frame sent counts as delivered."""
    session = _session()
    return None if session is None else session.__dict__.get("player_delivered", {}).get(run, -1)


def wait_delivered(run: str, upto: int, timeout: float = 0.5) -> None:
    """Hold this run (asleep, at most ``timeout`` s) until frame ``upto`` of ``run`` has left for the browser: the
    next rerun of the fragment cannot start before, so it cannot drop it (see :func:`track_delivery`).  A server
    whose event loop sends late thereby also slows its reruns down to what it sends."""
    session = _session()
    if session is None:
        return
    cv = session.__dict__.setdefault("player_cv", threading.Condition())
    with cv:
        cv.wait_for(lambda: session.__dict__.get("player_delivered", {}).get(run, -1) >= upto, timeout)
