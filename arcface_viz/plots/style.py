"""Shared look of every figure: the colour-blind-safe palette, presenter styling and exports."""

from __future__ import annotations

import copy
import re

import plotly.graph_objects as go

# Okabe–Ito, the colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}


def presenter_style(fig: go.Figure, scale: float = 1.45) -> go.Figure:
    """A copy of ``fig`` for a projector: fonts, lines and markers ``scale`` times larger, taller plot."""
    fig = go.Figure(copy.deepcopy(fig.to_dict()))
    base = fig.layout.font.size or 14
    fig.update_layout(font={"size": round(base * scale)}, hoverlabel={"font_size": round(base * scale)})
    if fig.layout.title and fig.layout.title.font and fig.layout.title.font.size:
        fig.update_layout(title_font_size=round(fig.layout.title.font.size * scale))
    if fig.layout.legend and fig.layout.legend.font and fig.layout.legend.font.size:
        fig.update_layout(legend_font_size=round(fig.layout.legend.font.size * scale))
    for trace in fig.data:
        line = getattr(trace, "line", None)
        if line is not None and getattr(line, "width", None) is not None:
            line.width = line.width * scale
        marker = getattr(trace, "marker", None)
        if marker is not None and isinstance(getattr(marker, "size", None), (int, float)):
            marker.size = marker.size * scale
    if fig.layout.title and fig.layout.title.text:
        title = wrap_title(fig.layout.title.text)
        lines = title.count("<br>") + 1
        size = (fig.layout.title.font.size if fig.layout.title.font and fig.layout.title.font.size
                else round(base * scale))
        top = fig.layout.margin.t if fig.layout.margin and fig.layout.margin.t is not None else 80
        fig.update_layout(title_text=title, title_y=1.0, title_yref="container", title_yanchor="top",
                          title_pad_t=12, margin_t=max(top, int(lines * size * 1.4) + 30))
    if fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * 1.15))
    return fig


def wrap_title(text: str, width: int = 42) -> str:
    """Break each line of a plotly title (``<br>``-separated, ``<sup>`` lines kept as such) at spaces so no line
    is longer than ``width`` visible characters: plotly never wraps a title, and on a projector's large fonts a
    long one ran off the chart."""
    out = []
    for line in text.split("<br>"):
        sup = line.startswith("<sup>") and line.endswith("</sup>")
        inner = line[5:-6] if sup else line
        if len(re.sub(r"<[^>]+>", "", inner)) <= width or "<" in inner:  # short, or inline markup: leave it
            out.append(line)
            continue
        rows, row = [], ""
        for word in inner.split(" "):
            if row and len(row) + 1 + len(word) > width:
                rows.append(row)
                row = word
            else:
                row = f"{row} {word}" if row else word
        rows.append(row)
        out.extend(f"<sup>{r}</sup>" if sup else r for r in rows)
    return "<br>".join(out)


def standalone_html(fig: go.Figure, title: str = "arcface-viz") -> str:
    """The figure as a self-contained interactive HTML page (plotly.js inlined: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False},
                       default_width="100%", default_height="90vh").replace(
        "<head>", f"<head><title>{title}</title>", 1)
