"""Fig. 4(b) target-logit curves and one sample's loss against its target angle (plotly, no Streamlit)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..geometry import FIG4B_CURVES, FIG4B_Y_RANGE, CurveLike, as_curve, theta_grid_deg
from ..losses import curricular_negative

CURVE_COLOURS = ("#000000", "#CC79A7", "#56B4E9", "#D55E00", "#009E73", "#0072B2", "#E69F00")
CURVE_DASHES = ("solid", "dashdot", "longdash")  # cycle after the seven colours are used
FONT_SIZE = 15


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def curve_style(i: int) -> dict:
    """Colour and dash of the i-th curve of a plot (Fig. 4(b) order gives each paper curve its own colour)."""
    return {"color": CURVE_COLOURS[i % len(CURVE_COLOURS)],
            "dash": CURVE_DASHES[(i // len(CURVE_COLOURS)) % len(CURVE_DASHES)]}


def style_figure(fig: go.Figure, title: str, height: int = 480) -> go.Figure:
    """The common look: white template, readable fonts, legend below the title."""
    fig.update_layout(
        template="plotly_white", title={"text": title, "x": 0.01, "font": {"size": FONT_SIZE + 3}},
        font={"size": FONT_SIZE}, height=height, margin={"l": 70, "r": 20, "t": 90, "b": 60},
        legend={"font": {"size": FONT_SIZE - 2}}, hoverlabel={"font_size": FONT_SIZE - 1},
    )
    return fig


def _degree_axis(full_range: bool) -> dict:
    lo, hi = (0.0, 180.0) if full_range else (20.0, 100.0)
    return {"range": [lo, hi], "dtick": 30 if full_range else 10, "ticksuffix": "°"}


def target_logit_figure(curves: Sequence[CurveLike] = FIG4B_CURVES, full_range: bool = False,
                        monotonic: bool = False, points: int | None = None, title: str | None = None
                        ) -> go.Figure:
    """Fig. 4(b): target logit f(θ) against θ (degrees), 20°–100° or, with ``full_range``, 0°–180°.

    Solid: the formula cos(m1·θ + m2) − m3 (with ``monotonic``, the curve the loss trains with).  In the
    full range each curve that turns back at θ* = (π − m2)/m1 gets a marker there and its monotonic
    extension cos θ − m3 − c drawn dashed.  ``curves``: Fig4bCurve objects or (label, m1, m2, m3).
    """
    items = [as_curve(c) for c in curves]
    if not items:
        raise ValueError("target_logit_figure needs at least one curve")
    deg = theta_grid_deg(full_range, points)
    theta = np.radians(deg)
    fig = go.Figure()
    y_min = FIG4B_Y_RANGE[0]
    for i, c in enumerate(items):
        st = curve_style(i)
        y = c.evaluate(theta, monotonic=monotonic)
        y_min = min(y_min, float(y.min()) - 0.05)
        if c.band is not None:  # ElasticFace: the range of its per-sample margins, shaded
            low, high = (b.evaluate(theta, monotonic=monotonic) for b in c.band)
            y_min = min(y_min, float(np.min(low)) - 0.05, float(np.min(high)) - 0.05)
            fig.add_trace(go.Scatter(x=np.r_[deg, deg[::-1]], y=np.r_[low, high[::-1]], fill="toself", mode="none",
                                     fillcolor=_rgba(st["color"], 0.22), name=f"{c.label}: band",
                                     legendgroup=c.key + str(i), showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=deg, y=y, mode="lines", name=c.label, legendgroup=c.key + str(i),
            line={"color": st["color"], "dash": st["dash"], "width": 3},
            hovertemplate="θ = %{x:.1f}°<br>f = %{y:.3f}<extra>" + c.label + "</extra>",
        ))
        t_star = c.theta_star
        if not full_range or t_star is None:
            continue
        m1, m2, m3 = c.margins
        if not monotonic:
            ext_deg = np.linspace(math.degrees(t_star), 180.0, 60)
            ext = c.evaluate(np.radians(ext_deg), monotonic=True)
            y_min = min(y_min, float(ext.min()) - 0.05)
            fig.add_trace(go.Scatter(
                x=ext_deg, y=ext, mode="lines", name=f"{c.label}: monotonic extension",
                legendgroup=c.key + str(i), showlegend=False,
                line={"color": st["color"], "dash": "dash", "width": 2},
                hovertemplate="θ = %{x:.1f}°<br>cos θ − m3 − c = %{y:.3f}<extra>training curve</extra>",
            ))
        fig.add_trace(go.Scatter(
            x=[math.degrees(t_star)], y=[-1.0 - m3], mode="markers", name=f"θ* of {c.label}",
            legendgroup=c.key + str(i), showlegend=False,
            marker={"color": st["color"], "size": 11, "symbol": "diamond", "line": {"color": "white", "width": 1}},
            hovertemplate="θ* = (π − m2)/m1 = %{x:.1f}°<extra>" + c.label + "</extra>",
        ))
    subtitle = ("training curve (monotonic past θ*)" if monotonic else
                "◆ θ* where cos(m1·θ + m2) turns back; dashed: the monotonic extension used in training"
                if full_range else "the paper's range, 20°–100°")
    style_figure(fig, (title or "Target logit curves (Fig. 4b)") + f"<br><sup>{subtitle}</sup>")
    fig.update_xaxes(title_text="θ between feature and target centre", **_degree_axis(full_range))
    fig.update_yaxes(title_text="target logit f(θ)", range=[y_min, FIG4B_Y_RANGE[1] + 0.05])
    return fig


def sample_loss_figure(curves: Sequence[CurveLike] = FIG4B_CURVES, s: float = 64.0, num_classes: int = 10,
                       other_cos: float = 0.0, easy_margin: bool = False, full_range: bool = True,
                       points: int | None = None, title: str | None = None, detached: bool = False) -> go.Figure:
    """One sample's cross entropy L(θ) and its slope dL/dθ against the target angle θ (two rows).

    The n − 1 other logits are s·other_cos (0: orthogonal, as at random initialisation, Fig. 4a);
    see :func:`arcface_viz.geometry.sample_loss`.  A-Softmax curves use ‖x‖ = s.  ``detached`` adds, dotted, the
    slope with the margin's gradient detached (insightface since 2022): same loss, the gradient of s·cos θ.
    """
    items = [as_curve(c) for c in curves]
    if not items:
        raise ValueError("sample_loss_figure needs at least one curve")
    deg = theta_grid_deg(full_range, points)
    theta = np.radians(deg)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("loss L(θ)", "slope dL/dθ (per radian)"))
    for i, c in enumerate(items):
        st = curve_style(i)
        loss, grad = c.sample_loss(theta, s, num_classes, other_cos, easy_margin=easy_margin)
        for row, y, what in ((1, loss, "L"), (2, grad, "dL/dθ")):
            fig.add_trace(go.Scatter(
                x=deg, y=y, mode="lines", name=c.label, legendgroup=c.key + str(i), showlegend=row == 1,
                line={"color": st["color"], "dash": st["dash"], "width": 2.5},
                hovertemplate="θ = %{x:.1f}°<br>" + what + " = %{y:.4g}<extra>" + c.label + "</extra>",
            ), row=row, col=1)
        if detached:
            flat = c.sample_loss(theta, s, num_classes, other_cos, easy_margin=easy_margin, detached=True)[1]
            fig.add_trace(go.Scatter(
                x=deg, y=flat, mode="lines", name=f"{c.label}: margin detached", legendgroup=c.key + str(i),
                showlegend=False, line={"color": st["color"], "dash": "dot", "width": 2},
                hovertemplate="θ = %{x:.1f}°<br>dL/dθ (margin detached) = %{y:.4g}<extra>" + c.label + "</extra>",
            ), row=2, col=1)
    if deg[0] <= 90.0 <= deg[-1]:
        fig.add_vline(x=90.0, line={"color": "#777777", "dash": "dot", "width": 1.5},
                      annotation_text="random init", annotation_position="top right")
    sub = f"s = {s:g}, n = {num_classes} classes, other logits s·{other_cos:g}" + (
        "; dotted: dL/dθ with the margin detached" if detached else "")
    style_figure(fig, (title or "One sample's loss against its target angle") + f"<br><sup>{sub}</sup>",
                 height=640)
    fig.update_xaxes(**_degree_axis(full_range))
    fig.update_xaxes(title_text="θ between feature and target centre", row=2, col=1)
    fig.update_yaxes(title_text="L", row=1, col=1)
    fig.update_yaxes(title_text="dL/dθ", row=2, col=1)
    return fig


def norm_family_figure(magface: Sequence[CurveLike], adaface: Sequence[CurveLike], highlight: tuple[int, int],
                       full_range: bool = True, points: int | None = None) -> go.Figure:
    """MagFace's and AdaFace's target logits as families over the feature norm (two panels): the curve at each
    norm of the family, thin, the one at ``highlight`` (an index per panel) thick; cos θ dotted for reference."""
    deg = theta_grid_deg(full_range, points)
    theta = np.radians(deg)
    panels = [(1, list(map(as_curve, magface)), highlight[0]), (2, list(map(as_curve, adaface)), highlight[1])]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("MagFace: margin m(a) grows with ‖x‖", "AdaFace: the norm moves the margin"))
    for col, family, chosen in panels:
        fig.add_trace(go.Scatter(x=deg, y=np.cos(theta), mode="lines", name="cos θ (no margin)",
                                 line={"color": "#777777", "dash": "dot", "width": 1.5}, showlegend=col == 1,
                                 legendgroup="cos", hoverinfo="skip"), row=1, col=col)
        for j, c in enumerate(family):
            shade = j / max(len(family) - 1, 1)
            colour = _rgba(CURVE_COLOURS[5] if col == 1 else CURVE_COLOURS[3], 0.35 + 0.65 * shade)
            fig.add_trace(go.Scatter(
                x=deg, y=c.evaluate(theta), mode="lines", name=c.label, legendgroup=f"fam{col}-{j}",
                line={"color": colour, "width": 4.5 if j == chosen else 1.8},
                hovertemplate="θ = %{x:.1f}°<br>f = %{y:.3f}<extra>" + c.label + "</extra>"), row=1, col=col)
    style_figure(fig, "Target logit over the feature norm<br><sup>the paper presets; thick: the norm of the "
                      "sliders</sup>", height=520)
    fig.update_xaxes(title_text="θ between feature and target centre", **_degree_axis(full_range))
    fig.update_yaxes(title_text="target logit f(θ)", row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.2, "yanchor": "top", "font": {"size": FONT_SIZE - 4}})
    return fig


def curricular_figure(ts: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), full_range: bool = True,
                      points: int | None = None) -> go.Figure:
    """CurricularFace's logit of a hard negative, cos θ_j·(t + cos θ_j), against θ_j for several t (the running
    mean of cos θ_y: near 0 early in training, towards 1 later), with the plain cos θ_j."""
    deg = theta_grid_deg(full_range, points)
    c = np.cos(np.radians(deg))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=deg, y=c, mode="lines", name="cos θ<sub>j</sub> (an easy negative)",
                             line={"color": "#000000", "dash": "dot", "width": 2}))
    for i, t in enumerate(ts):
        fig.add_trace(go.Scatter(x=deg, y=curricular_negative(c, t), mode="lines", name=f"t = {t:g}",
                                 line={"color": CURVE_COLOURS[(i + 1) % len(CURVE_COLOURS)], "width": 2.5},
                                 hovertemplate="θ<sub>j</sub> = %{x:.1f}°<br>logit/s = %{y:.3f}<extra>t = " + f"{t:g}"
                                               + "</extra>"))
    style_figure(fig, "CurricularFace: a hard negative's logit cos θ<sub>j</sub>·(t + cos θ<sub>j</sub>)<br><sup>"
                      "hard: cos θ<sub>j</sub> > cos(θ<sub>y</sub> + m); t follows the mean cos θ<sub>y</sub>"
                      "</sup>", height=440)
    fig.update_xaxes(title_text="θ<sub>j</sub> between feature and another class's centre",
                     **_degree_axis(full_range))
    fig.update_yaxes(title_text="negative logit / s")
    return fig
