"""The browser helpers themselves, against a small Streamlit script of known content: if a Streamlit
upgrade renames the test ids they rely on, these fail instead of the page tests passing vacuously."""

from __future__ import annotations

import struct
import textwrap

import pytest

from tests.browser.helpers import (
    assert_no_errors,
    error_texts,
    open_app,
    plotly_data,
    screenshot,
    set_slider,
    slider_text,
    slider_value,
    wait_for_plotly_change,
)
from tests.browser.server import serve_app

pytestmark = pytest.mark.browser

SCRIPT = """
import plotly.graph_objects as go
import streamlit as st

case = st.query_params.get("case", "")
st.title("Harness check")
s = st.slider("scale s", min_value=1.0, max_value=64.0, value=16.0, step=0.5, format="%.1f")
st.markdown(f"server value: `{s!r}`")
st.plotly_chart(go.Figure(go.Scatter(x=[0.0, 1.0, 2.0], y=[0.0, s, 2 * s])))
if case == "error":
    st.error("an st.error box")
if case == "exception":
    raise ValueError("boom from the script")
if case == "tall":
    for i in range(120):
        st.write(f"row {i}")
"""


@pytest.fixture(scope="module")
def harness_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("harness_app")
    (folder / "harness_app.py").write_text(textwrap.dedent(SCRIPT))
    with serve_app(folder / "server.log", folder / "harness_app.py") as base:
        yield base


def server_value(page) -> float:
    text = page.get_by_text("server value:").inner_text()
    return float(text.split(":", 1)[1].strip().strip("`"))


def test_a_clean_page_has_no_errors(page, harness_server):
    open_app(page, harness_server)
    assert error_texts(page) == []
    assert_no_errors(page)


@pytest.mark.parametrize("case, expected", [("error", "an st.error box"), ("exception", "boom from the script")])
def test_errors_on_the_page_are_reported(page, harness_server, case, expected):
    open_app(page, harness_server, query=f"case={case}")
    texts = error_texts(page)
    assert any(expected in t for t in texts), texts
    with pytest.raises(AssertionError, match=expected):
        assert_no_errors(page)


def test_set_slider_reruns_with_the_new_value(page, harness_server):
    open_app(page, harness_server)
    before = plotly_data(page, 0)
    assert before[0]["y"] == [0.0, 16.0, 32.0]
    # Inside the range, then the top end (End), the bottom end (Home), and back inside.
    for value in (20.5, 64.0, 1.0, 37.5):
        set_slider(page, "scale s", value)
        assert slider_value(page, "scale s") == value
        assert slider_text(page, "scale s") == f"{value:.1f}"
        assert server_value(page) == value  # the script's last run saw the final value
        data = wait_for_plotly_change(page, 0, before)
        assert data[0]["y"] == [0.0, value, 2 * value]
        before = data
    with pytest.raises(ValueError, match="grid"):
        set_slider(page, "scale s", 2.25)
    with pytest.raises(AssertionError, match="sliders on the page"):
        set_slider(page, "no such slider", 1.0)


def test_screenshot_shows_the_whole_page(page, harness_server, tmp_path):
    open_app(page, harness_server, query="case=tall")
    path = screenshot(page, "harness tall", tmp_path)
    assert path.name == "harness_tall.png"
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert width == 1400
    assert height > 3000  # 120 rows below the chart, not just the 1000-pixel viewport
    assert page.viewport_size == {"width": 1400, "height": 1000}
