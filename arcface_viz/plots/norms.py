"""Live-training figures for the losses after ArcFace: the feature norm as radius, and the running state.

- :func:`norm_figure` — MagFace and AdaFace read the feature norm a = ‖x‖: each sample is drawn in its
  direction at radius a (2-D: a disc, 3-D: a ball), the class centres as rays, and the norms the loss refers to
  (MagFace's l_a and u_a, AdaFace's running mean μ and μ ± σ) as rings.  Which samples sit far out (long
  features) and which near the middle shows what the loss treats as easy and as hard.
- :func:`state_figure` — a loss's running state over the steps (AdaFace's μ and σ, CurricularFace's t,
  AdaCos's s).

Snapshots are duck-typed like :mod:`.sphere`'s: ``embeddings`` (unit), ``norms``, ``labels``, ``centres``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .sphere import LEGEND_FONT, NEUTRAL, _names, _unit, class_symbol, palette
from .style import OKABE_ITO

RING_COLOURS = (OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["green"], OKABE_ITO["purple"])


def own_angles_deg(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """θ_y in degrees: each sample's angle to its own class centre."""
    w = _unit(np.asarray(centres, dtype=np.float64))
    u = _unit(np.asarray(embeddings, dtype=np.float64))
    cos = np.einsum("kd,kd->k", u, w[np.asarray(labels, dtype=np.int64)])
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def loss_rings(name: str, params: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, float]:
    """The norms a loss refers to, by label: MagFace's l_a and u_a, AdaFace's μ and μ ± σ (running state)."""
    if name == "magface":
        return {f"l_a = {params['l_a']:g}": float(params["l_a"]), f"u_a = {params['u_a']:g}": float(params["u_a"])}
    if name == "adaface" and "batch_mean" in state:
        mu, sd = float(state["batch_mean"]), float(state["batch_std"])
        rings = {f"μ = {mu:.2f}": mu, f"μ + σ = {mu + sd:.2f}": mu + sd}
        if mu - sd > 0:
            rings[f"μ − σ = {mu - sd:.2f}"] = mu - sd
        return rings
    return {}


def norm_figure(snap: Any, rings: Mapping[str, float] | None = None, title: str | None = None,
                class_names: Sequence[str] | None = None, uirevision: str = "norms", height: int = 520) -> go.Figure:
    """Each sample of ``snap`` in its direction at radius ‖x‖ (its feature norm), one trace per class, the class
    centres as rays and ``rings`` (label -> norm) as dashed circles (2-D) or spheres' equators (3-D).  The plot
    reaches 1.1× the 95th percentile of the norms (or the largest ring): the few longer features are drawn on
    that edge.  Hover shows a sample's norm and θ_y."""
    norms = np.asarray(snap.norms, dtype=np.float64)
    unit = _unit(np.asarray(snap.embeddings, dtype=np.float64))
    labels = np.asarray(snap.labels, dtype=np.int64)
    centres = np.asarray(snap.centres, dtype=np.float64)
    n, dim = centres.shape
    names, colours = _names(n, class_names), palette(n)
    ok = np.isfinite(norms) & np.isfinite(unit).all(axis=1)
    theta = own_angles_deg(unit, labels, centres)
    rings = {k: v for k, v in (rings or {}).items() if np.isfinite(v) and v > 0}
    reach = float(np.percentile(norms[ok], 95)) if ok.any() else 1.0
    edge = 1.1 * max([reach, *rings.values(), 1e-6])  # the few longest features are drawn on this edge
    top = 1.08 * edge
    pts = unit * np.minimum(norms, edge)[:, None]
    traces: list[dict[str, Any]] = []
    kind = "scatter" if dim == 2 else "scatter3d"
    for j in range(n):
        m = ok & (labels == j)
        if not m.any():
            continue
        p = pts[m]
        marker = dict(color=colours[j], symbol=class_symbol(j, n, dim), size=7 if dim == 2 else 3.5, opacity=0.8)
        trace = dict(type=kind, x=p[:, 0], y=p[:, 1], mode="markers", name=names[j], marker=marker,
                     customdata=np.stack([norms[m], theta[m]], axis=1),
                     hovertemplate=names[j] + "<br>‖x‖ = %{customdata[0]:.2f}<br>θ<sub>y</sub> = "
                                              "%{customdata[1]:.1f}°<extra></extra>")
        if dim == 3:
            trace["z"] = p[:, 2]
        traces.append(trace)
    tips = _unit(centres) * top
    seg: list[list[float | None]] = [[] for _ in range(dim)]
    for p in tips:
        for a in range(dim):
            seg[a] += [0.0, float(p[a]), None]
    rays = dict(type=kind, x=seg[0], y=seg[1], mode="lines", name="class centres W<sub>j</sub>",
                line=dict(color=NEUTRAL, width=2.5 if dim == 2 else 5), hoverinfo="skip")
    if dim == 3:
        rays["z"] = seg[2]
    traces.append(rays)
    phi = np.linspace(0.0, 2 * np.pi, 181)
    if (norms[ok] > edge).any():
        outer = dict(type=kind, x=edge * np.cos(phi), y=edge * np.sin(phi), mode="lines", hoverinfo="name",
                     name=f"edge: ‖x‖ ≥ {edge:.3g} drawn on it", line=dict(color=NEUTRAL, width=1))
        if dim == 3:
            outer["z"] = np.zeros_like(phi)
        traces.append(outer)
    for (label, r), colour in zip(rings.items(), RING_COLOURS * 3, strict=False):
        ring = dict(type=kind, x=r * np.cos(phi), y=r * np.sin(phi), mode="lines", name=label,
                    line=dict(color=colour, dash="dash", width=2), hoverinfo="name")
        if dim == 3:
            ring["z"] = np.zeros_like(phi)
        traces.append(ring)
    layout: dict[str, Any] = dict(
        title=dict(text=title, x=0.5, xanchor="center", font=dict(size=18)) if title else None,
        height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10), uirevision=uirevision,
        legend=dict(font=dict(size=LEGEND_FONT - 2), itemsizing="constant"), font=dict(size=14), hovermode="closest")
    if dim == 2:
        ax = dict(range=[-top, top], zeroline=False, showgrid=False, showticklabels=False)
        layout.update(xaxis=dict(ax, constrain="domain"), yaxis=dict(ax, scaleanchor="x", scaleratio=1,
                                                                         constrain="domain"))
    else:
        ax = dict(range=[-top, top], visible=False)
        layout["scene"] = dict(xaxis=ax, yaxis=ax, zaxis=ax, aspectmode="cube")
    return go.Figure(data=traces, layout=layout)


STATE_LABELS = {"batch_mean": "μ (running mean of ‖x‖)", "batch_std": "σ (running std of ‖x‖)",
                "t": "t (running mean of cos θ<sub>y</sub>)", "s": "s (adaptive scale)"}


def state_figure(steps: Sequence[int], values: Mapping[str, Sequence[float]], title: str | None = None,
                 height: int = 300) -> go.Figure:
    """A loss's running state against the optimizer step, one line per quantity; a log axis when the values span
    more than 50× (AdaFace's μ and σ start at 20 and 100)."""
    fig = go.Figure()
    for (name, ys), colour in zip(values.items(), RING_COLOURS * 2, strict=False):
        fig.add_trace(go.Scatter(x=np.asarray(steps), y=np.asarray(ys, dtype=float), mode="lines+markers",
                                 name=STATE_LABELS.get(name, name), line=dict(color=colour, width=2.5),
                                 marker=dict(size=5)))
    every = np.concatenate([np.asarray(v, dtype=float) for v in values.values()]) if values else np.ones(1)
    every = every[np.isfinite(every)]
    log = every.size > 0 and every.min() > 0 and every.max() / every.min() > 50  # μ, σ fall from 20 and 100
    fig.update_yaxes(type="log" if log else "linear")
    fig.update_layout(title=dict(text=title or "The loss's running state", x=0.5, xanchor="center"),
                      height=height, margin=dict(l=50, r=10, t=45, b=40), font=dict(size=14),
                      xaxis=dict(title=dict(text="step")), uirevision="state",
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.25, yanchor="top"))
    return fig
