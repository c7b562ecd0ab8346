"""Helpers for Streamlit AppTest runs of the app's pages (import as `from app_helpers import ...`)."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def open_page(path: str, query: dict | None = None, timeout: float = 120) -> AppTest:
    """Run app.py with `query` in the URL, switch to `path` (e.g. "pages/toy_training.py"); no exception."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if path != "pages/home.py":
        at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as dicts (data + layout)."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


PLAYER = "pages._player.player"  # the live frames player's component name (pages/_player.py)


def player_args(at: AppTest) -> dict | None:
    """The arguments the page sent its live frames player (frames, run, playing, interval, max_queue), parsed;
    None when the page shows no player.  A page has at most one."""
    found = [c for c in at.get("component_instance") if c.proto.component_name == PLAYER]
    assert len(found) <= 1, f"{len(found)} players on the page"
    return json.loads(found[0].proto.json_args) if found else None


def player_frames(at: AppTest) -> list[dict]:
    """Every frame sent to the page's player, oldest first, each {"n": frame index, "rows": rows of columns of
    items}; [] when the page shows no player."""
    args = player_args(at)
    return json.loads(args["frames"]) if args is not None else []


def frame_items(frame: dict) -> list[dict]:
    """The items of one player frame, row by row, column by column, in order."""
    return [item for row in frame["rows"] for col in row for item in col]


def player_items(at: AppTest) -> list[dict]:
    """The items of the frame the player shows (the last one sent), in order; [] when there is none."""
    frames = player_frames(at)
    return frame_items(frames[-1]) if frames else []


TEXT_KINDS = ("md", "heading", "caption", "html")


def item_texts(items: list[dict]) -> list[str]:
    """The texts of the status lines, headings, captions and HTML captions among ``items``, in order."""
    return [item[kind] for item in items for kind in TEXT_KINDS if kind in item]


def player_texts(at: AppTest) -> list[str]:
    """The texts (status lines, headings, captions, HTML captions) of the frame the player shows, in order."""
    return item_texts(player_items(at))


def player_status(at: AppTest) -> list[str]:
    """The status lines ({"md": ...} items) of the frame the player shows: one per trained model, left first."""
    return [item["md"] for item in player_items(at) if "md" in item]


def player_figures(at: AppTest) -> list[dict]:
    """The figures (plotly dicts: data + layout) of the frame the player shows, in order."""
    return [item["fig"] for item in player_items(at) if "fig" in item]


def player_keys(at: AppTest) -> list[str]:
    """The keys of the figures of the frame the player shows ("emb-0", "theta-0", …), in order."""
    return [item["key"] for item in player_items(at) if "fig" in item]


def widget(at: AppTest, label: str):
    """The slider, toggle, selectbox, multiselect, number input or radio with this label."""
    for kind in ("slider", "toggle", "selectbox", "multiselect", "number_input", "radio", "checkbox"):
        for w in getattr(at, kind):
            if w.label == label:
                return w
    raise AssertionError(f"no widget labelled {label!r}")


def button(at: AppTest, label: str):
    for b in at.button:
        if b.label == label:
            return b
    raise AssertionError(f"no button labelled {label!r}")
