"""Fig. 5 binary decision margins: the (θ1, θ2) plane, the unit circle, width against φ, Softmax's line."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..geometry import (
    BOTH,
    CLASS1,
    CLASS2,
    FIG5_CURVES,
    FIG5_WIDTH_CURVES,
    NEITHER,
    REGION_NAMES,
    CurveLike,
    as_curve,
    boundary_theta2,
    circle_regions,
    clip_line,
    decide,
    margin_crossing,
    margin_width,
    softmax_boundary,
    swallow_angle,
)
from .curves import curve_style, style_figure
from .style import OKABE_ITO

REGION_COLOURS = {CLASS1: OKABE_ITO["blue"], CLASS2: OKABE_ITO["orange"], NEITHER: "#AAAAAA",
                  BOTH: OKABE_ITO["purple"]}
_FILL = {CLASS1: "rgba(0,114,178,0.45)", CLASS2: "rgba(230,159,0,0.45)", NEITHER: "rgba(170,170,170,0.55)"}


def _margin_curve(curve: CurveLike):
    c = as_curve(curve)
    if c.kind == "a_softmax":
        raise ValueError(f"{c.label}: Fig. 5 geometry needs a margin curve or a loss's curve")
    return c


def _add_theta_raster(fig: go.Figure, c, top: float, points: int, row: int | None, col: int | None,
                      showlegend: bool) -> None:
    """A loss's curve on the (θ1, θ2) plane as a raster of :func:`decide` (any shape of region: a curve that
    jumps, negatives the loss changes)."""
    t = np.linspace(0.0, top, points)
    lab = decide(t[None, :], t[:, None], curve=c)  # rows θ2, columns θ1
    deg = np.degrees(t)
    kw = {"row": row, "col": col} if row else {}
    present = [k for k in (NEITHER, CLASS1, CLASS2, BOTH) if (lab == k).any()]
    scale = [[i / max(len(present) - 1, 1), REGION_COLOURS[k]] for i, k in enumerate(present)]
    code = np.searchsorted(present, lab)
    fig.add_trace(go.Heatmap(x=deg, y=deg, z=code, colorscale=scale if len(present) > 1 else
                             [[0, REGION_COLOURS[present[0]]], [1, REGION_COLOURS[present[0]]]], zmin=0,
                             zmax=max(len(present) - 1, 1), showscale=False, opacity=0.55, hoverinfo="skip",
                             name="regions"), **kw)
    for k in present:  # legend entries for the raster's colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=REGION_NAMES[k], legendgroup=f"r{k}",
                                 showlegend=showlegend, marker={"color": REGION_COLOURS[k], "size": 12,
                                                                "symbol": "square"}), **kw)
    fig.add_trace(go.Scatter(x=[0.0, deg[-1]], y=[0.0, deg[-1]], mode="lines", name="θ1 = θ2",
                             legendgroup="diag", showlegend=showlegend,
                             line={"color": "#444444", "dash": "dot", "width": 1}, hoverinfo="skip"), **kw)


def _add_theta_plane(fig: go.Figure, c, top: float, points: int, row: int | None, col: int | None,
                     showlegend: bool) -> None:
    m1, m2, m3 = c.margins
    t = np.linspace(0.0, top, points)
    b = boundary_theta2(t, m1, m2, m3)
    deg, top_deg = np.degrees(t), math.degrees(top)
    bd = np.degrees(np.minimum(b, top))
    kw = {"row": row, "col": col} if row else {}
    box = [0.0, top_deg, top_deg, 0.0, 0.0], [0.0, 0.0, top_deg, top_deg, 0.0]
    fig.add_trace(go.Scatter(x=box[0], y=box[1], fill="toself", fillcolor=_FILL[NEITHER], mode="lines",
                             line={"width": 0}, name=REGION_NAMES[NEITHER], legendgroup="neither",
                             showlegend=showlegend, hoverinfo="skip"), **kw)
    # class 1 wins above θ2 = b(θ1); class 2 is the mirror image
    xs1 = np.concatenate([deg, [top_deg, 0.0]])
    ys1 = np.concatenate([bd, [top_deg, top_deg]])
    for k, (x, y) in ((CLASS1, (xs1, ys1)), (CLASS2, (ys1, xs1))):
        fig.add_trace(go.Scatter(x=x, y=y, fill="toself", fillcolor=_FILL[k], mode="lines", line={"width": 0},
                                 name=REGION_NAMES[k], legendgroup=f"class{k}", showlegend=showlegend,
                                 hoverinfo="skip"), **kw)
    inside = b < top - 1e-12  # b is non-decreasing, so this is a prefix: one unbroken line
    bx, by = deg[inside], np.degrees(b[inside])
    if bx.size < 2:  # the boundary leaves the box at once: draw its first piece up to the edge
        bx, by = deg[:2], bd[:2]
    for k, (x, y) in ((CLASS1, (bx, by)), (CLASS2, (by, bx))):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"class {k} boundary", legendgroup=f"bd{k}",
                                 showlegend=showlegend, line={"color": REGION_COLOURS[k], "dash": "dash",
                                                               "width": 3},
                                 hovertemplate="θ1 = %{x:.1f}°, θ2 = %{y:.1f}°<extra>class " + str(k) +
                                 " boundary</extra>"), **kw)
    fig.add_trace(go.Scatter(x=[0.0, top_deg], y=[0.0, top_deg], mode="lines", name="θ1 = θ2",
                             legendgroup="diag", showlegend=showlegend,
                             line={"color": "#444444", "dash": "dot", "width": 1}, hoverinfo="skip"), **kw)


def theta_plane_figure(curves: CurveLike | Sequence[CurveLike] = FIG5_CURVES, full: bool = False,
                       points: int = 361, title: str | None = None) -> go.Figure:
    """Fig. 5 on the (θ1, θ2) plane, one panel per loss: dashed boundaries f(θ1) = cos θ2 (class 1) and its
    mirror (class 2), the grey margin between, axes 0–90° (or 0–180° with ``full``).

    ``curves``: one or several Fig4bCurve / (label, m1, m2, m3).  Where both classes win (a negative
    margin) the two colours overlap.
    """
    single = not isinstance(curves, Sequence) or (len(curves) == 4 and isinstance(curves[0], str))
    if single:
        curves = [curves]
    items = [_margin_curve(c) for c in curves]
    if not items:
        raise ValueError("theta_plane_figure needs at least one curve")
    top = math.pi if full else math.pi / 2
    top_deg = math.degrees(top)
    fig = make_subplots(rows=1, cols=len(items), subplot_titles=[c.label for c in items],
                        horizontal_spacing=0.06 if len(items) > 1 else 0.2)
    for j, c in enumerate(items, start=1):
        if c.kind == "loss":
            _add_theta_raster(fig, c, top, min(points, 241), 1, j, showlegend=j == 1)
        else:
            _add_theta_plane(fig, c, top, points, 1, j, showlegend=j == 1)
        fig.update_xaxes(range=[0, top_deg], dtick=30, ticksuffix="°", title_text="θ1", constrain="domain",
                         row=1, col=j)
        fig.update_yaxes(range=[0, top_deg], dtick=30, ticksuffix="°", scaleanchor=f"x{'' if j == 1 else j}",
                         scaleratio=1, row=1, col=j, title_text="θ2" if j == 1 else None)
    rule = ("class k wins where its logit (the loss's own) beats the other's"
            if any(c.kind == "loss" for c in items) else "class k wins where f(θ_k) > cos θ_other")
    style_figure(fig, (title or "Decision margins on the (θ1, θ2) plane (Fig. 5)") +
                 f"<br><sup>{rule}; grey: neither does</sup>",
                 height=380 if len(items) > 2 else 520)
    fig.update_layout(legend={"orientation": "h", "y": -0.2, "x": 0})
    return fig


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, label) for each run of equal labels; stop is exclusive."""
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [labels.size]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True)]


def circle_margin_figure(phi: float, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, label: str | None = None,
                         n: int = 721, curve=None) -> go.Figure:
    """Fig. 5 on the unit circle: W1 at 0, W2 at φ (radians); each direction coloured by who wins.

    Dashed rays mark the two boundaries on the arc between W1 and W2; the grey arc between them is the
    margin, whose width :func:`arcface_viz.geometry.margin_width` gives.  ``curve``: a loss's curve
    (geometry.after_arcface_curve) instead of (m1, m2, m3).
    """
    alpha, labels = circle_regions(phi, m1, m2, m3, n=n, curve=curve)
    fig = go.Figure()
    seen = set()
    for a, b, k in _runs(labels):
        seg = alpha[a:min(b + 1, alpha.size)]  # overlap by one point so the arcs touch
        fig.add_trace(go.Scatter(
            x=np.cos(seg), y=np.sin(seg), mode="lines", name=REGION_NAMES[k], legendgroup=f"r{k}",
            showlegend=k not in seen, line={"color": REGION_COLOURS[k], "width": 12},
            hovertemplate=REGION_NAMES[k] + "<extra></extra>",
        ))
        seen.add(k)
    t = float(margin_crossing(phi, m1, m2, m3, curve=curve))
    width = float(margin_width(phi, m1, m2, m3, curve=curve))
    for ang, k in ((t, CLASS1), (phi - t, CLASS2)):
        fig.add_trace(go.Scatter(x=[0.0, 1.15 * math.cos(ang)], y=[0.0, 1.15 * math.sin(ang)], mode="lines",
                                 name=f"class {k} boundary", line={"color": REGION_COLOURS[k], "dash": "dash",
                                                                     "width": 2}, hoverinfo="skip"))
    for ang, name, k in ((0.0, "W1", CLASS1), (phi, "W2", CLASS2)):
        x, y = math.cos(ang), math.sin(ang)
        fig.add_trace(go.Scatter(x=[0.0, x], y=[0.0, y], mode="lines", name=name, showlegend=False,
                                 line={"color": REGION_COLOURS[k], "width": 4}, hoverinfo="skip"))
        fig.add_annotation(x=x, y=y, ax=0, ay=0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=2, arrowsize=1.2, arrowwidth=3, arrowcolor=REGION_COLOURS[k], text="")
        fig.add_annotation(x=1.28 * x, y=1.28 * y, text=f"<b>{name}</b>", showarrow=False,
                           font={"size": 17, "color": REGION_COLOURS[k]})
    sw = swallow_angle(m1, m2, m3, curve=curve)
    if width < -1e-9:
        note = f"the classes overlap by {-math.degrees(width):.2f}° (negative margin)"
    elif phi <= sw + 1e-12:
        note = f"the margin swallows the whole arc (φ ≤ {math.degrees(sw):.2f}°)"
    else:
        note = f"margin width {math.degrees(width):.2f}°"
    name = label or (curve.label if curve is not None else f"(m1, m2, m3) = ({m1:g}, {m2:g}, {m3:g})")
    style_figure(fig, f"{name}: W1 and W2 {math.degrees(phi):.1f}° apart<br><sup>{note}</sup>", height=560)
    fig.update_xaxes(range=[-1.45, 1.45], visible=False)
    fig.update_yaxes(range=[-1.45, 1.45], visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.02, "x": 0})
    return fig


def margin_width_figure(curves: Sequence[CurveLike] = FIG5_WIDTH_CURVES, points: int = 361,
                        title: str | None = None) -> go.Figure:
    """Margin width (degrees) on the circle against the angle φ between W1 and W2: flat at m2 for ArcFace once
    φ > m2, flat at 0 for Norm-Softmax, curved for CosFace and SphereFace; the dotted diagonal is φ itself (the
    margin swallowing the whole arc).
    """
    items = [_margin_curve(c) for c in curves]
    if not items:
        raise ValueError("margin_width_figure needs at least one curve")
    phi = np.linspace(0.0, math.pi, points)
    deg = np.degrees(phi)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0.0, 180.0], y=[0.0, 180.0], mode="lines", name="width = φ (whole arc)",
                             line={"color": "#999999", "dash": "dot", "width": 1.5}, hoverinfo="skip"))
    y_lo, y_hi = 0.0, 60.0
    for i, c in enumerate(items):
        st = curve_style(i)
        w = np.degrees(margin_width(phi, curve=c))
        y_lo, y_hi = min(y_lo, float(w.min())), max(y_hi, float(w.max()))
        fig.add_trace(go.Scatter(x=deg, y=w, mode="lines", name=c.label,
                                 line={"color": st["color"], "dash": st["dash"], "width": 3},
                                 hovertemplate="φ = %{x:.1f}°<br>width = %{y:.2f}°<extra>" + c.label +
                                 "</extra>"))
    style_figure(fig, (title or "Margin width against the angle between the two centres") +
                 "<br><sup>On the circle: flat for ArcFace (once φ > m2) and Norm-Softmax (0); CosFace's and "
                 "SphereFace's change with φ</sup>")
    fig.update_xaxes(title_text="φ = angle between W1 and W2", range=[0, 180], dtick=30, ticksuffix="°")
    fig.update_yaxes(title_text="margin width", ticksuffix="°", range=[y_lo - 2, min(y_hi, 180.0) + 3])
    return fig


def _clip_half_plane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland–Hodgman: the part of a convex polygon where normal·x + offset ≥ 0."""
    out = []
    for p, q in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        dp, dq = normal @ p + offset, normal @ q + offset
        if dp >= 0:
            out.append(p)
        if (dp >= 0) != (dq >= 0):
            out.append(p + (q - p) * dp / (dp - dq))
    return np.array(out).reshape(-1, 2)


def softmax_plane_figure(w1, w2, b1: float = 0.0, b2: float = 0.0, extent: float = 2.0) -> go.Figure:
    """Fig. 5, Softmax: the line (W1 − W2)·x + b1 − b2 = 0 in 2-D feature space, regions on either side.

    No margin: every feature off the line is claimed.  With b1 ≠ b2 the line misses the origin, so the
    class of a direction changes with the feature's norm.
    """
    w1, w2 = np.asarray(w1, dtype=float), np.asarray(w2, dtype=float)
    box = np.array([[-extent, -extent], [extent, -extent], [extent, extent], [-extent, extent]])
    normal, offset = w1 - w2, b1 - b2
    fig = go.Figure()
    for k, sign in ((CLASS1, 1.0), (CLASS2, -1.0)):
        poly = _clip_half_plane(box, sign * normal, sign * offset)
        if len(poly) >= 3 and not np.allclose(normal, 0.0):
            closed = np.vstack([poly, poly[:1]])
            fig.add_trace(go.Scatter(x=closed[:, 0], y=closed[:, 1], fill="toself", fillcolor=_FILL[k],
                                     mode="lines", line={"width": 0}, name=REGION_NAMES[k], hoverinfo="skip"))
    note = "no margin: the dashed line is the whole boundary"
    try:
        seg = clip_line(*softmax_boundary(w1, w2, b1, b2), (-extent, extent, -extent, extent))
    except ValueError:
        seg = None
        winner = CLASS1 if offset > 0 else CLASS2 if offset < 0 else NEITHER
        closed = np.vstack([box, box[:1]])
        fig.add_trace(go.Scatter(x=closed[:, 0], y=closed[:, 1], fill="toself", fillcolor=_FILL[winner],
                                 mode="lines", line={"width": 0}, name=REGION_NAMES[winner], hoverinfo="skip"))
        note = "W1 = W2: no boundary, the bias alone decides"
    if seg is not None:
        fig.add_trace(go.Scatter(x=seg[:, 0], y=seg[:, 1], mode="lines", name="boundary",
                                 line={"color": "#000000", "dash": "dash", "width": 3},
                                 hovertemplate="(W1 − W2)·x + b1 − b2 = 0<extra></extra>"))
    elif note.startswith("no margin"):
        note = "the boundary lies outside the plotted square"
    if abs(offset) > 1e-12 and not np.allclose(normal, 0.0):
        note += "; b1 ≠ b2, so the class depends on ‖x‖ as well as the angle"
    for w, name, k in ((w1, "W1", CLASS1), (w2, "W2", CLASS2)):
        fig.add_trace(go.Scatter(x=[0.0, w[0]], y=[0.0, w[1]], mode="lines+markers", name=name,
                                 line={"color": REGION_COLOURS[k], "width": 4},
                                 marker={"size": [0, 12], "symbol": "circle"},
                                 hovertemplate=name + " = (%{x:.2f}, %{y:.2f})<extra></extra>"))
    style_figure(fig, f"Softmax: W1·x + b1 = W2·x + b2<br><sup>{note}</sup>", height=560)
    fig.update_xaxes(range=[-extent, extent], title_text="x₁", zeroline=True, constrain="domain")
    fig.update_yaxes(range=[-extent, extent], title_text="x₂", scaleanchor="x", scaleratio=1, zeroline=True)
    return fig
