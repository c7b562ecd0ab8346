"""Shared look of every figure: the colour-blind-safe palette, presenter styling and exports."""

from __future__ import annotations

import copy

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
    if fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * 1.15))
    return fig


def standalone_html(fig: go.Figure, title: str = "arcface-viz") -> str:
    """The figure as a self-contained interactive HTML page (plotly.js inlined: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False},
                       default_width="100%", default_height="90vh").replace(
        "<head>", f"<head><title>{title}</title>", 1)
