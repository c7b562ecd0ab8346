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
