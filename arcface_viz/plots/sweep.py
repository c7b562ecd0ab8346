"""Heat maps of a parameter grid: one cell per pair of values, coloured by a measured number.

:func:`grid_map_figure` is the drawing (arrays in, figure out), shared by the sweep page (:func:`sweep_map_figure`,
small models trained at once) and the Training runs page (a grid of full-scale runs coloured by their
verification accuracy).  Cells that did not train are grey with a ✗ and say why on hover, never NaN; where the
margin cannot fit between neighbouring centres (geometry) a thick dashed line separates those cells from the rest;
a rule of thumb (AdaCos's s = √2·ln(C − 1)) can be drawn over the map as a curve.  An invisible marker at each
cell's centre carries the cell's index in ``customdata``, so a click selects the cell (Streamlit's ``on_select``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .style import OKABE_ITO

NOT_TRAINED = "#9E9E9E"
EMPTY = "#EEEEEE"
THEORY_COLOUR = OKABE_ITO["vermillion"]
RULE_COLOUR = OKABE_ITO["sky_blue"]
CELL_MARKER = "cell"  # name of the clickable trace
VALUES = "values"  # name of the heat map of the values


def _tick(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def axis_position(values: Sequence[float], v: float) -> float:
    """Where value ``v`` falls on an axis drawn at positions 0..n−1 for ``values`` (sorted either way):
    piecewise linear between neighbouring values, on a log scale when every value is positive and they grow
    by a constant factor (s = 2, 4, 8, …); NaN outside half a cell beyond the ends."""
    vals = np.asarray(values, dtype=float)
    n = len(vals)
    if n == 1:
        return 0.0 if v == vals[0] else math.nan
    order = np.argsort(vals)
    xs, pos = vals[order], np.arange(n, dtype=float)[order]
    ratios = xs[1:] / xs[:-1] if (xs > 0).all() else None
    logs = ratios is not None and np.allclose(ratios, ratios[0], rtol=0.05) and ratios[0] > 1.5
    t = (np.log(xs), math.log(v)) if logs and v > 0 else (xs, v)
    grid, at = t
    if at < grid[0]:  # extrapolate half a cell at each end
        p = pos[0] + (at - grid[0]) / (grid[1] - grid[0]) * (pos[1] - pos[0])
    elif at > grid[-1]:
        p = pos[-1] + (at - grid[-1]) / (grid[-1] - grid[-2]) * (pos[-1] - pos[-2])
    else:
        p = float(np.interp(at, grid, pos))
    return p if -0.5 <= p <= n - 0.5 else math.nan


def boundary_segments(inside: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Cell edges (x0, y0, x1, y1), in cell coordinates, between neighbouring cells where ``inside`` differs."""
    ny, nx = inside.shape
    out = []
    for iy in range(ny):
        for ix in range(nx):
            if ix + 1 < nx and inside[iy, ix] != inside[iy, ix + 1]:
                out.append((ix + 0.5, iy - 0.5, ix + 0.5, iy + 0.5))
            if iy + 1 < ny and inside[iy, ix] != inside[iy + 1, ix]:
                out.append((ix - 0.5, iy + 0.5, ix + 0.5, iy + 0.5))
    return out


def grid_map_figure(z: np.ndarray, x_values: Sequence[Any], y_values: Sequence[Any], *, x_label: str, y_label: str,
                    colour_label: str, hover: Sequence[Sequence[str]], cell_text: Sequence[Sequence[str]] | None = None,
                    trained: np.ndarray | None = None, fits: np.ndarray | None = None,
                    curve: tuple[Sequence[float], Sequence[float], str] | None = None,
                    zrange: tuple[float | None, float | None] = (None, None), reverse: bool = False,
                    title: str | None = None, height: int = 520) -> go.Figure:
    """The heat map of a grid: ``z`` (rows = y values, columns = x values; NaN = nothing to show).

    ``hover[iy][ix]`` is each cell's tooltip and ``cell_text`` the short label written in it; ``trained`` False
    greys a cell out with a ✗; ``fits`` False marks the cells where the margin cannot fit, fenced off by a dashed
    line; ``curve`` = (x values, y values, name) draws a rule over the map (points outside it are left out);
    ``reverse`` puts the dark end of the colour scale at high values (for numbers where lower is better)."""
    z = np.asarray(z, dtype=float)
    ny, nx = z.shape
    ok = np.ones_like(z, dtype=bool) if trained is None else np.asarray(trained, dtype=bool)
    shown = np.where(ok & np.isfinite(z), z, np.nan)
    xs, ys = list(range(nx)), list(range(ny))
    text = [list(row) for row in cell_text] if cell_text is not None else None
    traces: list[go.BaseTraceType] = [go.Heatmap(  # every cell's frame, seen where there is no value yet
        z=np.ones((ny, nx)).tolist(), x=xs, y=ys, colorscale=[[0, EMPTY], [1, EMPTY]], showscale=False,
        hoverinfo="skip", xgap=2, ygap=2, name="cells"), go.Heatmap(
        z=shown.tolist(), x=xs, y=ys, colorscale="Viridis", reversescale=reverse, zmin=zrange[0], zmax=zrange[1],
        colorbar=dict(title=dict(text=colour_label, side="right")), hoverinfo="skip", xgap=2, ygap=2,
        text=text, texttemplate="%{text}" if text is not None else None, textfont=dict(size=13),
        name=VALUES)]
    blank = [(ix, iy) for iy in ys for ix in xs if text and text[iy][ix] and ok[iy, ix] and np.isnan(shown[iy, ix])]
    if blank:  # cells with no value yet say what they are (a queued or running run)
        traces.append(go.Scatter(x=[ix for ix, _ in blank], y=[iy for _, iy in blank], mode="text",
                                 text=[text[iy][ix] for ix, iy in blank], textfont=dict(size=13, color=NOT_TRAINED),
                                 hoverinfo="skip", showlegend=False, name="no value yet"))
    if not ok.all():
        grey = np.where(~ok, 1.0, np.nan)
        traces.append(go.Heatmap(z=grey.tolist(), x=xs, y=ys, colorscale=[[0, NOT_TRAINED], [1, NOT_TRAINED]],
                                 showscale=False, hoverinfo="skip", xgap=2, ygap=2,
                                 text=[["✗" if not ok[iy, ix] else "" for ix in xs] for iy in ys],
                                 texttemplate="%{text}", textfont=dict(size=20, color="#FFFFFF"),
                                 name="did not train"))
        traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="✗ did not train",
                                 marker=dict(symbol="square", size=14, color=NOT_TRAINED), hoverinfo="skip"))
    shapes = []
    if fits is not None and not np.asarray(fits).all():
        for x0, y0, x1, y1 in boundary_segments(np.asarray(fits, dtype=bool)):
            shapes.append(dict(type="line", x0=x0, y0=y0, x1=x1, y1=y1, xref="x", yref="y",
                               line=dict(color=THEORY_COLOUR, width=5, dash="dash")))
        traces.append(go.Scatter(x=[None], y=[None], mode="lines", name="theory: beyond this line the margin "
                                 "cannot fit between neighbouring centres",
                                 line=dict(color=THEORY_COLOUR, width=5, dash="dash"), hoverinfo="skip"))
    if curve is not None:
        cx, cy, name = curve
        px = [axis_position(x_values, float(v)) for v in cx]
        py = [axis_position(y_values, float(v)) for v in cy]
        keep = [(a, b) for a, b in zip(px, py, strict=True) if math.isfinite(a) and math.isfinite(b)]
        if keep:
            traces.append(go.Scatter(x=[a for a, _ in keep], y=[b for _, b in keep], mode="lines", name=name,
                                     line=dict(color=RULE_COLOUR, width=4), hoverinfo="skip"))
    cells_x = [ix for iy in ys for ix in xs]
    cells_y = [iy for iy in ys for ix in xs]
    traces.append(go.Scatter(
        x=cells_x, y=cells_y, mode="markers", name=CELL_MARKER, showlegend=False,
        marker=dict(symbol="square", size=30, color="rgba(0,0,0,0)", opacity=0.0),
        customdata=[[ix, iy] for ix, iy in zip(cells_x, cells_y, strict=True)],
        hovertext=[hover[iy][ix] for ix, iy in zip(cells_x, cells_y, strict=True)],
        hovertemplate="%{hovertext}<extra></extra>"))
    fig = go.Figure(traces)
    fig.update_layout(
        title=title, height=height, shapes=shapes, hovermode="closest", clickmode="event+select",
        xaxis=dict(title=x_label, tickmode="array", tickvals=xs, ticktext=[_tick(v) for v in x_values],
                   range=[-0.5, nx - 0.5], showgrid=False, zeroline=False),
        yaxis=dict(title=y_label, tickmode="array", tickvals=ys, ticktext=[_tick(v) for v in y_values],
                   range=[-0.5, ny - 0.5], showgrid=False, zeroline=False),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0),
        margin=dict(l=70, r=30, t=70 if title else 30, b=110), font=dict(size=14))
    return fig


def _format(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def cell_hover(result: Any, ix: int, iy: int) -> str:
    """A cell's tooltip: its two settings, every number (± spread over seeds), why it did not train, the theory."""
    from ..sweep import METRICS, axis_label

    cfg = result.config
    c = result.cell(ix, iy)
    lines = [f"<b>{axis_label(cfg.x.name)} = {_tick(c.x)}, {axis_label(cfg.y.name)} = {_tick(c.y)}</b>"]
    if not c.trained:
        lines.append(f"<b>did not train</b>: {c.reason}")
    for key, (label, fmt, _) in METRICS.items():
        mean, sd = c.mean(key), c.spread(key)
        spread = f" ± {format(sd, fmt)}" if sd is not None else ""
        lines.append(f"{label}: {_format(mean, fmt)}{spread}")
    if len(c.runs) > 1:
        lines.append(f"mean of {len(c.runs)} seeds ({sum(r['trained'] for r in c.runs)} trained)")
    if c.margin_fits is False:
        lines.append("theory: the margin cannot fit between neighbouring centres")
    lines.append("<i>click to open this run in its lesson</i>")
    return "<br>".join(lines)


def sweep_map_figure(result: Any, metric: str = "test_acc", *, title: str | None = None,
                     height: int = 520) -> go.Figure:
    """The map of a :class:`~arcface_viz.sweep.SweepResult` coloured by ``metric`` (a key of ``sweep.METRICS``),
    with the theory line and, on an axis pair of s and the number of classes, AdaCos's √2·ln(C − 1)."""
    from ..sweep import METRICS, adacos_scale, axis_label

    cfg = result.config
    label, fmt, higher = METRICS[metric]
    z = result.grid(metric)
    ny, nx = cfg.shape
    trained = result.trained_grid()
    short = ".0%" if fmt.endswith("%") else fmt
    cell_text = [[("" if not trained[iy, ix] or not math.isfinite(z[iy, ix]) else format(z[iy, ix], short))
                  for ix in range(nx)] for iy in range(ny)]
    hover = [[cell_hover(result, ix, iy) for ix in range(nx)] for iy in range(ny)]
    chance = 1.0 / result.num_classes
    zrange = (chance if metric == "test_acc" else 0.5 if metric == "verification_accuracy" else None,
              1.0 if fmt.endswith("%") else None)
    curve = None
    names = {cfg.x.name, cfg.y.name}
    if names == {"s", "classes"}:
        classes = [c for c in np.linspace(3, 12, 91)]
        scales = [adacos_scale(c) for c in classes]
        cx, cy = (classes, scales) if cfg.x.name == "classes" else (scales, classes)
        curve = (cx, cy, "AdaCos: s = √2·ln(C − 1)")
    return grid_map_figure(z, cfg.x.values, cfg.y.values, x_label=axis_label(cfg.x.name),
                           y_label=axis_label(cfg.y.name), colour_label=label, hover=hover, cell_text=cell_text,
                           trained=trained, fits=result.fits_grid(), curve=curve, zrange=zrange,
                           reverse=not higher, title=title, height=height)


def clicked_cell(selection: Any) -> tuple[int, int] | None:
    """(ix, iy) of the cell a click selected, from Streamlit's plotly selection state, or None."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        points = getattr(getattr(selection, "selection", None), "points", None)
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, (list, tuple)) and len(data) == 2:
            return int(data[0]), int(data[1])
    return None
