"""Presenter styling and standalone HTML export (arcface_viz.plots.style)."""

from __future__ import annotations

import re

import plotly.graph_objects as go

from arcface_viz.plots.margins import margin_width_figure
from arcface_viz.plots.style import presenter_style, standalone_html, wrap_title


def _visible(line: str) -> str:
    return re.sub(r"<[^>]+>", "", line)


def test_wrap_title_breaks_long_lines_at_spaces_and_keeps_sup_lines():
    text = ("Margin width against the angle between the two centres<br><sup>ArcFace's margin is a constant "
            "angle; CosFace's and SphereFace's are not</sup>")
    lines = wrap_title(text, width=30).split("<br>")
    assert all(len(_visible(line)) <= 30 for line in lines)
    assert " ".join(_visible(line) for line in lines) == _visible(text.replace("<br>", " "))  # nothing lost
    assert [line.startswith("<sup>") for line in lines] == [False, False, True, True, True]
    assert wrap_title("Short title") == "Short title"


def test_presenter_style_scales_and_makes_room_for_a_wrapped_title():
    fig = margin_width_figure()
    big = presenter_style(fig)
    assert big.layout.font.size > (fig.layout.font.size or 14)
    widths = [t.line.width for t in fig.data]
    assert [t.line.width for t in big.data] == [w * 1.45 for w in widths]
    assert big.layout.title.text.count("<br>") > fig.layout.title.text.count("<br>")
    assert big.layout.margin.t > fig.layout.margin.t
    assert fig.layout.title.text.count("<br>") == 1  # the original is left alone


def test_standalone_html_works_offline():
    html = standalone_html(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), title="A curve")
    assert "<title>A curve</title>" in html
    assert not re.search(r"<script[^>]+src=", html) and "Plotly.newPlot" in html  # plotly.js inlined, no fetch
