"""Live-training figures: embeddings on the unit circle / sphere, decision regions, θ histograms, curves.

Pure functions, arrays in and a plotly Figure out (no Streamlit).  What they draw:

- :func:`embedding_figure` — Fig. 3 of the ArcFace paper: L2-normalised features x_i on the unit circle
  (d = 2) or sphere (d = 3), coloured by class, with the class centres W_j drawn as rays.
- :func:`decision_regions_figure` / :func:`add_decision_regions` — which class wins at each direction,
  argmax_j cos θ_j, and in margin mode the grey gap where the winner k fails its own margin test
  f(θ_k) > max_{j≠k} cos θ_j, f(θ) = cos(m1·θ + m2) − m3 (Fig. 5, on the circle instead of a line).
- :func:`theta_histogram_figure` — Fig. 4(a): the distribution of θ_yi at the start, middle and now.
- :func:`curves_figure` — loss and accuracy against the optimizer step.
- :func:`compare_figures` / :func:`compare_figure` — two runs side by side (Fig. 3: Norm-Softmax vs ArcFace).
- :func:`training_animation` — a self-contained plotly animation (frames + play button) of a run.

Snapshots are duck-typed: only the attributes ``step, loss, train_acc, test_acc, embeddings, labels,
centres, theta_deg`` (and optionally ``margin_scale``) are read.  Every figure is cheap to rebuild: at
most one trace per class, numpy arrays (serialised as base64 by plotly), cached circle / sphere meshes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go

from arcface_viz.losses import target_logit

from .style import OKABE_ITO

# Okabe & Ito (2008), yellow moved to 7th place because it is faint on white.
CLASS_COLOURS = tuple(OKABE_ITO[k] for k in
                      ("orange", "sky_blue", "green", "blue", "vermillion", "purple", "yellow", "black"))
# Paul Tol's "muted" scheme (colour-blind safe, 9 colours) plus black: used from 9 classes on.
TOL_MUTED = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
             "#AA4499", "#000000")
GAP_COLOUR = "#BBBBBB"  # the paper's grey margin (Fig. 5)
NEUTRAL = "rgba(120,120,120,0.75)"  # circle, rays: visible on light and dark themes
SYMBOLS_2D = ("circle", "square", "diamond", "triangle-up", "cross", "x")
SYMBOLS_3D = ("circle", "square", "diamond", "cross", "x", "circle-open")

AXIS_RANGE = (-1.3, 1.3)  # fixed, so live frames never jump
POINT_JITTER = 0.035  # 2-D points are drawn at radius 1 ± this (deterministic per sample index)
RING = (1.07, 1.13)  # 2-D decision-region ring (inner, outer radius)
RAY_END = 1.18  # class-centre rays go from the origin to this radius
LEGEND_FONT = 16  # readable on a projector
PHASE_COLOURS = {"start": "#D55E00", "middle": "#E69F00", "now": "#0072B2"}


def as_figure(spec: Callable[..., dict[str, Any]]) -> Callable[..., go.Figure]:
    """A ``*_spec`` function (the figure as a plain dict, what the live pages send after
    :func:`~arcface_viz.plots.style.wire`) as the function that returns it as a validated plotly Figure."""

    @functools.wraps(spec)
    def figure(*args: Any, **kwargs: Any) -> go.Figure:
        return go.Figure(spec(*args, **kwargs))

    figure.__name__ = figure.__qualname__ = spec.__name__.replace("_spec", "_figure")
    return figure


# ---------------------------------------------------------------------------------------------
# Colours and cached geometry


def palette(n: int) -> list[str]:
    """n class colours: Okabe–Ito up to 8 classes, Paul Tol's muted + black up to 10, then cycled.

    Beyond 10 classes the colours repeat; :func:`class_symbol` then changes the marker shape.
    """
    base = CLASS_COLOURS if n <= len(CLASS_COLOURS) else TOL_MUTED
    return [base[j % len(base)] for j in range(n)]


def class_symbol(j: int, n: int, dim: int = 2) -> str:
    """Marker shape for class j: a plain circle until the palette cycles, then one shape per cycle."""
    symbols = SYMBOLS_2D if dim == 2 else SYMBOLS_3D
    cycle = len(CLASS_COLOURS) if n <= len(CLASS_COLOURS) else len(TOL_MUTED)
    return symbols[(j // cycle) % len(symbols)]


@lru_cache(maxsize=4)
def _circle(n: int = 361) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0.0, 2.0 * math.pi, n)
    return np.cos(a).astype(np.float32), np.sin(a).astype(np.float32)


@lru_cache(maxsize=8)
def _jitter(k: int, amplitude: float) -> np.ndarray:
    """Radii 1 ± amplitude, fixed per sample index so a point does not flicker between frames."""
    return (1.0 + amplitude * np.random.default_rng(0).uniform(-1.0, 1.0, k)).astype(np.float32)


@lru_cache(maxsize=2)
def sphere_mesh(n_lat: int = 21, n_lon: int = 41) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-sphere grid (x, y, z), each (n_lat, n_lon), for the faint sphere surface (computed once)."""
    lat = np.linspace(-math.pi / 2, math.pi / 2, n_lat)[:, None]
    lon = np.linspace(-math.pi, math.pi, n_lon)[None, :]
    x, y, z = np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat) * np.ones_like(lon)
    return tuple(a.astype(np.float32) for a in (x, y, z))  # type: ignore[return-value]


@lru_cache(maxsize=2)
def icosphere(level: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Subdivided icosahedron on the unit sphere: vertices (V, 3) and triangles (F, 3), computed once.

    Level 4 has 2,562 vertices and 5,120 faces (edges of about 4°): uniform cells for colouring the
    decision regions on the sphere.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = [np.asarray(p, dtype=float) / np.linalg.norm(p) for p in verts]
    for _ in range(level):
        midpoint: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, midpoint: dict[tuple[int, int], int] = midpoint) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoint:
                p = v[a] + v[b]
                v.append(p / np.linalg.norm(p))
                midpoint[key] = len(v) - 1
            return midpoint[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.asarray(v, dtype=np.float32), np.asarray(faces, dtype=np.uint16)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _names(n: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [f"class {j}" for j in range(n)]
    if len(class_names) < n:
        raise ValueError(f"{len(class_names)} class names for {n} classes")
    return [str(c) for c in class_names[:n]]


# ---------------------------------------------------------------------------------------------
# Embeddings on the circle / sphere (Fig. 3)


#: Legend names of the rays: W_j is a class centre for the cosine heads; Softmax's W_j works with a bias b_j,
#: so it is only a weight vector (the boundary depends on b_j and on the feature norm).
CENTRES_NAME = "class centres W<sub>j</sub>"
WEIGHTS_NAME = "class weights W<sub>j</sub> (with bias)"


def centres_name(head: str) -> str:
    """The legend name of the rays for a loss head ("linear": Softmax's weights, else class centres)."""
    return WEIGHTS_NAME if head == "linear" else CENTRES_NAME


def _centre_traces(centres: np.ndarray, names: list[str], colours: list[str], dim: int,
                   showlegend: bool = True, name: str = CENTRES_NAME) -> list[dict[str, Any]]:
    """Rays origin → RAY_END·W_j (one trace, None-separated) and a coloured marker at each tip."""
    ok = np.isfinite(centres).all(axis=1)
    w = _unit(np.where(ok[:, None], centres, 1.0))
    idx = np.flatnonzero(ok)
    tips = RAY_END * w[idx]
    seg: list[list[float | None]] = [[] for _ in range(dim)]
    for p in tips:
        for a in range(dim):
            seg[a] += [0.0, float(p[a]), None]
    if dim == 2:
        phi = np.degrees(np.arctan2(w[idx, 1], w[idx, 0]))
        hover = [f"W<sub>{j}</sub> ({names[j]})<br>φ = {a:.1f}°" for j, a in zip(idx, phi, strict=True)]
    else:
        hover = [f"W<sub>{j}</sub> ({names[j]})" for j in idx]
    tip_colours = [colours[j] for j in idx]
    common = dict(hoverinfo="skip", legendgroup="centres")
    if dim == 2:
        rays = dict(type="scatter", x=seg[0], y=seg[1], mode="lines", name=name,
                    line=dict(color=NEUTRAL, width=2.5), showlegend=showlegend, **common)
        marks = dict(type="scatter", x=tips[:, 0], y=tips[:, 1], mode="markers", name="centre tips", showlegend=False,
                     marker=dict(size=13, symbol="diamond", color=tip_colours,
                                 line=dict(color="#333333", width=1.5)),
                     hovertext=hover, hoverinfo="text", legendgroup="centres", cliponaxis=False)
    else:
        rays = dict(type="scatter3d", x=seg[0], y=seg[1], z=seg[2], mode="lines", name=name,
                    line=dict(color=NEUTRAL, width=6), showlegend=showlegend, **common)
        marks = dict(type="scatter3d", x=tips[:, 0], y=tips[:, 1], z=tips[:, 2], mode="markers", name="centre tips",
                     showlegend=False, marker=dict(size=7, symbol="diamond", color=tip_colours,
                                                   line=dict(color="#333333", width=1)),
                     hovertext=hover, hoverinfo="text", legendgroup="centres")
    return [rays, marks]


def _point_traces(emb: np.ndarray, labels: np.ndarray, centres: np.ndarray, names: list[str],
                  colours: list[str], dim: int, hover_text: np.ndarray | None, all_classes: bool,
                  jitter: float, showlegend: bool = True) -> list[dict[str, Any]]:
    """One trace per class: the samples of that class, hover shows θ_yi (angle to their own centre)."""
    n = len(centres)
    ok = np.isfinite(emb).all(axis=1) & (labels >= 0) & (labels < n)
    if dim == 2:
        emb = emb * _jitter(len(emb), jitter)[:, None] if jitter > 0 and len(emb) else emb
    w = _unit(np.nan_to_num(centres, nan=1.0))
    cos_own = np.einsum("kd,kd->k", _unit(np.where(ok[:, None], emb, 1.0)), w[np.where(ok, labels, 0)])
    theta = np.degrees(np.arccos(np.clip(cos_own, -1.0, 1.0))).round(1).astype(np.float32)
    present = set(np.unique(labels[ok]).tolist())
    traces = []
    for j in range(n):
        if not all_classes and j not in present:
            continue
        m = ok & (labels == j)
        p = emb[m].astype(np.float32)
        marker = dict(color=colours[j], symbol=class_symbol(j, n, dim))
        kw: dict[str, Any] = dict(name=names[j], mode="markers", legendgroup=f"class{j}", showlegend=showlegend)
        if hover_text is not None:
            kw.update(hovertext=hover_text[m].tolist(), hoverinfo="text")
        else:
            kw.update(customdata=theta[m], hovertemplate=names[j] + "<br>θ<sub>y</sub> = %{customdata}°<extra></extra>")
        if dim == 2:
            marker.update(size=7, opacity=0.8, line=dict(color="rgba(0,0,0,0.35)", width=0.5))
            traces.append(dict(type="scatter", x=p[:, 0], y=p[:, 1], marker=marker, **kw))
        else:
            marker.update(size=3.5, opacity=0.85)
            traces.append(dict(type="scatter3d", x=p[:, 0], y=p[:, 1], z=p[:, 2], marker=marker, **kw))
    return traces


def _sphere_trace() -> dict[str, Any]:
    x, y, z = sphere_mesh()
    line = dict(show=True, color="rgba(128,128,128,0.35)", width=1, highlight=False)
    return dict(type="surface", x=x, y=y, z=z, name="sphere", opacity=0.12, showscale=False, hoverinfo="skip",
                colorscale=[[0, "#9a9a9a"], [1, "#9a9a9a"]], showlegend=False,
                contours=dict(z=dict(start=-0.75, end=0.76, size=0.25, **line),
                              x=dict(show=False), y=dict(show=False)),
                lighting=dict(ambient=0.9, diffuse=0.2, specular=0.0))


def _layout(dim: int, title: str | None, uirevision: str, height: int) -> dict[str, Any]:
    layout: dict[str, Any] = dict(
        title=dict(text=title, x=0.5, xanchor="center", font=dict(size=18)) if title else None,
        height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10), uirevision=uirevision,
        legend=dict(font=dict(size=LEGEND_FONT), itemsizing="constant", tracegroupgap=2),
        font=dict(size=14), hovermode="closest",
    )
    if dim == 2:
        ax = dict(range=list(AXIS_RANGE), autorange=False, visible=False, fixedrange=False)
        layout.update(xaxis=dict(ax, constrain="domain"),
                      yaxis=dict(ax, scaleanchor="x", scaleratio=1, constrain="domain"))
    else:
        ax = dict(range=list(AXIS_RANGE), autorange=False, visible=False)
        layout["scene"] = dict(xaxis=ax, yaxis=ax, zaxis=ax, aspectmode="cube", dragmode="orbit",
                               camera=dict(eye=dict(x=0.95, y=0.95, z=0.6), up=dict(x=0, y=0, z=1),
                                           center=dict(x=0, y=0, z=0)))
    return layout


def _background(dim: int) -> dict[str, Any]:
    if dim == 3:
        return _sphere_trace()
    cx, cy = _circle()
    return dict(type="scatter", x=cx, y=cy, mode="lines", name="unit circle", hoverinfo="skip",
          showlegend=False, line=dict(color=NEUTRAL, width=1.5))


def _subcentre_traces(subcentres: np.ndarray, dominant: np.ndarray, names: list[str], colours: list[str],
                      dim: int) -> list[dict[str, Any]]:
    """Sub-center ArcFace: every non-dominant sub-centre as a thin dashed ray with an open diamond at its tip
    (the dominant one is the class's centre W_j, drawn as the other centres)."""
    sub = _unit(np.asarray(subcentres, dtype=np.float64))
    n, k, _ = sub.shape
    rows = [(j, i) for j in range(n) for i in range(k) if i != int(dominant[j])]
    if not rows:
        return []
    tips = RAY_END * np.array([sub[j, i] for j, i in rows])
    seg: list[list[float | None]] = [[] for _ in range(dim)]
    for p in tips:
        for a in range(dim):
            seg[a] += [0.0, float(p[a]), None]
    hover = [f"sub-centre {i} of {names[j]} (not dominant)" for j, i in rows]
    colour = [colours[j] for j, _ in rows]
    kind, extra = ("scatter", {}) if dim == 2 else ("scatter3d", {"z": seg[2]})
    ray = dict(type=kind, x=seg[0], y=seg[1], mode="lines", name="non-dominant sub-centres",
               line=dict(color=NEUTRAL, width=1.5 if dim == 2 else 3, dash="dot"), hoverinfo="skip",
               legendgroup="subcentres", **extra)
    mark = dict(type=kind, x=tips[:, 0], y=tips[:, 1], mode="markers", name="sub-centre tips", showlegend=False,
                marker=dict(size=11 if dim == 2 else 6, symbol="diamond-open", color=colour, line=dict(width=2)),
                hovertext=hover, hoverinfo="text", legendgroup="subcentres",
                **({"cliponaxis": False} if dim == 2 else {"z": tips[:, 2]}))
    return [ray, mark]


NOISY_RADIUS = 0.9  # 2-D: flipped-label samples drawn just inside the circle, so they stand out


def _noisy_traces(noisy: Any, names: list[str], colours: list[str], dim: int) -> list[dict[str, Any]]:
    """The training samples whose label was flipped: crosses in the colour of their (wrong) label."""
    emb = _unit(np.asarray(noisy.embeddings, dtype=np.float64).reshape(-1, dim))
    if not len(emb):
        return []
    labels = np.asarray(noisy.labels, dtype=np.int64)
    where = np.where(np.asarray(noisy.at_dominant, dtype=bool), "the dominant sub-centre",
                     "a non-dominant sub-centre")
    hover = [f"flipped label: {names[j]}<br>nearest: {w} of {names[j]}" for j, w in zip(labels, where, strict=True)]
    marker = dict(symbol="x", color=[colours[j] for j in labels], size=10 if dim == 2 else 5,
                  line=dict(color="#000000", width=1))
    common = dict(mode="markers", name="flipped labels (training)", marker=marker, hovertext=hover,
                  hoverinfo="text", legendgroup="noisy")
    if dim == 2:
        p = NOISY_RADIUS * emb
        return [dict(type="scatter", x=p[:, 0], y=p[:, 1], **common)]
    return [dict(type="scatter3d", x=emb[:, 0], y=emb[:, 1], z=emb[:, 2], **common)]


def _embedding_traces(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray,
                      class_names: Sequence[str] | None, hover_text: Sequence[str] | None,
                      regions: dict[str, Any] | None, all_classes: bool, jitter: float,
                      centres_label: str = CENTRES_NAME, subcentres: np.ndarray | None = None,
                      dominant: np.ndarray | None = None, noisy: Any = None) -> tuple[int, list[dict]]:
    """(d, traces): background (circle / sphere) first, then one trace per class, rays, tips, regions."""
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] not in (2, 3):
        raise ValueError(f"centres must be (n, 2) or (n, 3), got shape {centres.shape}")
    dim = centres.shape[1]
    emb = _unit(np.asarray(embeddings, dtype=np.float64).reshape(-1, dim))
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(emb):
        raise ValueError(f"{len(emb)} embeddings but {len(labels)} labels")
    n = len(centres)
    names, colours = _names(n, class_names), palette(n)
    hover = None if hover_text is None else np.asarray(hover_text, dtype=object)
    traces = [_background(dim)]
    traces += _point_traces(emb, labels, centres, names, colours, dim, hover, all_classes, jitter)
    traces += _centre_traces(centres, names, colours, dim, name=centres_label)
    if subcentres is not None and dominant is not None:
        traces += _subcentre_traces(subcentres, dominant, names, colours, dim)
    if noisy is not None:
        traces += _noisy_traces(noisy, names, colours, dim)
    if regions is not None:
        if dim == 3:
            traces = traces[1:]  # the coloured sphere replaces the faint one
        traces += _region_traces(centres, names, colours, all_classes=all_classes, **regions)
    return dim, traces


def embedding_spec(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray,
                     class_names: Sequence[str] | None = None, title: str | None = None,
                     hover_text: Sequence[str] | None = None, *, regions: dict[str, Any] | None = None,
                     all_classes: bool = False, jitter: float = POINT_JITTER, uirevision: str = "embedding",
                     height: int = 560, centres_label: str = CENTRES_NAME, subcentres: np.ndarray | None = None,
                     dominant: np.ndarray | None = None, noisy: Any = None) -> dict[str, Any]:
    """Fig. 3: normalised embeddings on the unit circle (d = 2) or sphere (d = 3), centres W_j as rays.

    ``embeddings`` (k, d) and ``centres`` (n, d) are L2-normalised (re-normalised here to be safe);
    ``labels`` (k,) are class indices 0..n−1.  In 2-D each point is drawn at radius 1 ± ``jitter``
    (fixed per sample index) so that a crowd of samples at one angle stays visible.  One points trace
    per class present (per class when ``all_classes``); non-finite rows are left out.
    ``regions=dict(m1=, m2=, m3=, mode=)`` adds the decision regions (see :func:`add_decision_regions`).
    ``uirevision`` keeps the viewer's zoom and 3-D camera across live updates.  ``centres_label`` names the
    rays in the legend (see :func:`centres_name`).  Sub-center ArcFace: ``subcentres`` (n, K, d) and
    ``dominant`` (n,) add every non-dominant sub-centre; ``noisy`` (training.NoisyLabels) the samples with
    flipped labels.
    """
    dim, traces = _embedding_traces(embeddings, labels, centres, class_names, hover_text, regions, all_classes,
                                    jitter, centres_label, subcentres, dominant, noisy)
    return {"data": traces, "layout": _layout(dim, title, uirevision, height)}


embedding_figure = as_figure(embedding_spec)


# ---------------------------------------------------------------------------------------------
# Decision regions (Fig. 5 on the circle)


def region_labels(directions: np.ndarray, centres: np.ndarray, m1: float = 1.0, m2: float = 0.0,
                  m3: float = 0.0, mode: str = "margin") -> np.ndarray:
    """Winning class at each direction u: k = argmax_j cos θ_j, cos θ_j = u·W_j.

    ``mode="margin"`` returns −1 (the grey gap) where the winner fails its margin test
    f(θ_k) > max_{j≠k} cos θ_j with f(θ) = cos(m1·θ + m2) − m3 (monotonic extension past π),
    i.e. where a training sample of class k would still be pushed towards W_k.
    """
    if mode not in ("plain", "margin"):
        raise ValueError(f"mode must be 'plain' or 'margin', got {mode!r}")
    w = np.asarray(centres, dtype=np.float64)
    ok = np.isfinite(w).all(axis=1)
    cos = _unit(np.asarray(directions, dtype=np.float64)) @ _unit(np.where(ok[:, None], w, 1.0)).T
    cos[:, ~ok] = -np.inf
    winner = np.argmax(cos, axis=1)
    if mode == "plain" or cos.shape[1] < 2:
        return winner
    rows = np.arange(len(cos))
    cos_k = cos[rows, winner].copy()
    cos[rows, winner] = -np.inf
    runner_up = cos.max(axis=1)
    theta_k = np.arccos(np.clip(cos_k, -1.0, 1.0))
    wins = np.asarray(target_logit(theta_k, m1, m2, m3, monotonic=True)) > runner_up
    return np.where(wins, winner, -1)


def circle_regions(centres: np.ndarray, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                   mode: str = "margin", n_dirs: int = 1440) -> tuple[np.ndarray, np.ndarray]:
    """(α, label) at ``n_dirs`` bin centres α ∈ [0, 2π) on the circle; label −1 marks the margin gap."""
    alpha = (np.arange(n_dirs) + 0.5) * (2.0 * math.pi / n_dirs)
    dirs = np.stack([np.cos(alpha), np.sin(alpha)], axis=1)
    return alpha, region_labels(dirs, centres, m1, m2, m3, mode)


def region_runs(labels: np.ndarray) -> list[tuple[int, float, float]]:
    """Contiguous arcs of a circular label array: (label, start, end) in radians, start < end ≤ start + 2π.

    Bin i covers [i, i+1)·2π/n; an arc may wrap past 2π (then end > 2π).
    """
    n = len(labels)
    step = 2.0 * math.pi / n
    change = np.flatnonzero(labels != np.roll(labels, 1))
    if len(change) == 0:
        return [(int(labels[0]), 0.0, 2.0 * math.pi)]
    runs = []
    for a, b in zip(change, np.r_[change[1:], change[0] + n], strict=True):
        runs.append((int(labels[a]), a * step, b * step))
    return runs


def _annulus(a0: float, a1: float, r0: float, r1: float) -> tuple[np.ndarray, np.ndarray]:
    k = max(2, math.ceil((a1 - a0) / math.radians(5.0)) + 1)  # 5° chords: off the arc by < 0.1% of r
    a = np.linspace(a0, a1, k)
    r = np.r_[np.full(k, r1), np.full(k, r0), r1]
    ang = np.r_[a, a[::-1], a0]
    return r * np.cos(ang), r * np.sin(ang)


def _ring_traces(centres: np.ndarray, m1: float, m2: float, m3: float, mode: str, names: list[str],
                 colours: list[str], radii: tuple[float, float] = RING, all_classes: bool = False,
                 showlegend: bool = True) -> list[dict[str, Any]]:
    """Annular sectors, one filled trace per class (None-separated arcs) and one for the grey gap."""
    _, lab = circle_regions(centres, m1, m2, m3, mode)
    polys: dict[int, tuple[list, list]] = {}
    for k, a0, a1 in region_runs(lab):
        x, y = _annulus(a0, a1, *radii)
        px, py = polys.setdefault(k, ([], []))
        if px:
            px.append(None)
            py.append(None)
        px += x.round(4).tolist()
        py += y.round(4).tolist()
    gap_share = float(np.mean(lab == -1))
    keys = list(range(len(centres))) if all_classes else sorted(k for k in polys if k >= 0)
    traces = []
    for k in keys:
        px, py = polys.get(k, ([], []))
        traces.append(dict(type="scatter", x=px, y=py, mode="lines", fill="toself", fillcolor=colours[k],
                           line=dict(width=0, color=colours[k]), opacity=0.85, hoveron="fills",
                           name=f"region: {names[k]}", legendgroup=f"class{k}", showlegend=False,
                           hoverinfo="name"))
    if mode == "margin":
        px, py = polys.get(-1, ([], []))
        traces.append(dict(type="scatter", x=px, y=py, mode="lines", fill="toself", fillcolor=GAP_COLOUR,
                           line=dict(width=0, color=GAP_COLOUR), hoveron="fills", hoverinfo="name",
                           name=f"margin gap ({100 * gap_share:.0f}% of the circle)",
                           legendgroup="gap", showlegend=showlegend))
    return traces


def _region_mesh(centres: np.ndarray, m1: float, m2: float, m3: float, mode: str,
                 colours: list[str], opacity: float) -> dict[str, Any]:
    """Sphere triangles coloured by the winning class at their centroid (cell colours, no blending)."""
    v, f = icosphere()
    lab = region_labels(v[f].mean(axis=1), centres, m1, m2, m3, mode)
    n = len(colours)
    # Discrete colourscale: value j+1 → class j, value 0 → gap.
    cols = [GAP_COLOUR] + colours
    scale = []
    for i, c in enumerate(cols):
        scale += [[i / len(cols), c], [(i + 1) / len(cols), c]]
    return dict(type="mesh3d", x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
                intensity=(lab + 1).astype(np.float32), intensitymode="cell", colorscale=scale,
                cmin=-0.5, cmax=n + 0.5, showscale=False, opacity=opacity, hoverinfo="skip",
                name="decision regions" + (" (grey: margin gap)" if mode == "margin" else ""),
                showlegend=True, legendgroup="gap", flatshading=True,
                lighting=dict(ambient=0.9, diffuse=0.2, specular=0.0))


def _region_traces(centres: np.ndarray, names: list[str], colours: list[str], m1: float = 1.0, m2: float = 0.0,
                   m3: float = 0.0, mode: str = "margin", all_classes: bool = False) -> list[dict[str, Any]]:
    centres = np.asarray(centres, dtype=np.float64)
    if centres.shape[1] == 2:
        return _ring_traces(centres, m1, m2, m3, mode, names, colours, all_classes=all_classes)
    return [_region_mesh(centres, m1, m2, m3, mode, colours, opacity=0.3)]


def add_decision_regions(fig: go.Figure, centres: np.ndarray, m1: float = 1.0, m2: float = 0.0,
                         m3: float = 0.0, mode: str = "margin", class_names: Sequence[str] | None = None,
                         all_classes: bool = False) -> go.Figure:
    """Add the decision regions to an :func:`embedding_figure` (in place; returns ``fig``).

    2-D: a ring just outside the circle, coloured by the winning class at each direction, grey where
    the winner fails its margin (``mode="margin"``).  3-D: the faint sphere is replaced by a sphere
    whose cells are coloured the same way.
    """
    centres = np.asarray(centres, dtype=np.float64)
    n, dim = centres.shape
    if dim == 3:
        fig.data = tuple(t for t in fig.data if t.name != "sphere")
    fig.add_traces(_region_traces(centres, _names(n, class_names), palette(n), m1, m2, m3, mode, all_classes))
    return fig


def decision_regions_figure(centres: np.ndarray, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                            s: float = 16.0, mode: str = "plain", class_names: Sequence[str] | None = None,
                            title: str | None = None, uirevision: str = "regions",
                            height: int = 480) -> go.Figure:
    """Decision regions of the cosine head on the circle (2-D) or sphere (3-D), Fig. 5 generalised.

    The ring is coloured by argmax_j cos(α − φ_j).  In ``mode="margin"`` the grey arcs are the
    directions where the winner k fails f(θ_k) > max_{j≠k} cos θ_j, f(θ) = cos(m1·θ + m2) − m3
    (for ArcFace a band of width m2 around every bisector).  Hovering the ring (2-D) gives, per
    direction, the winner, θ_k and p_k = softmax(s·logits)_k with the margin applied to k: the
    probability the loss gives a sample of class k lying there.
    """
    centres = np.asarray(centres, dtype=np.float64)
    n, dim = centres.shape
    names, colours = _names(n, class_names), palette(n)
    if title is None:
        title = ("Decision regions" + (f" with margin (m1={m1:g}, m2={m2:g}, m3={m3:g})" if mode == "margin"
                                       else " (argmax cos θ_j)"))
    layout = _layout(dim, title, uirevision, height)
    if dim == 3:
        traces: list[Any] = [_region_mesh(centres, m1, m2, m3, mode, colours, opacity=0.9)]
        traces += _centre_traces(centres, names, colours, dim)
        return go.Figure(data=traces, layout=layout)
    cx, cy = _circle()
    traces = [dict(type="scatter", x=cx, y=cy, mode="lines", name="unit circle", hoverinfo="skip", showlegend=False,
                   line=dict(color=NEUTRAL, width=1.5))]
    ring = (0.9, 1.1)
    traces += _ring_traces(centres, m1, m2, m3, mode, names, colours, radii=ring)
    for t in traces[1:]:
        t["showlegend"] = True
    # Hover layer: one invisible marker per 2° around the ring with the per-direction numbers.
    alpha, lab = circle_regions(centres, m1, m2, m3, "plain", n_dirs=180)
    w = _unit(np.nan_to_num(centres, nan=1.0))
    cos = np.stack([np.cos(alpha), np.sin(alpha)], axis=1) @ w.T
    theta_k = np.arccos(np.clip(cos[np.arange(len(alpha)), lab], -1.0, 1.0))
    logits = s * cos
    logits[np.arange(len(alpha)), lab] = s * np.asarray(target_logit(theta_k, m1, m2, m3, monotonic=True))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p_k = p[np.arange(len(alpha)), lab] / p.sum(axis=1)
    r = sum(ring) / 2
    hover = [f"α = {math.degrees(a):.0f}°: nearest centre {names[k]}<br>θ<sub>k</sub> = {math.degrees(t):.1f}°,"
             f" p<sub>k</sub> = {pk:.2f} (s = {s:g})" for a, k, t, pk in zip(alpha, lab, theta_k, p_k, strict=True)]
    traces.append(dict(type="scatter", x=(r * np.cos(alpha)).astype(np.float32),
                 y=(r * np.sin(alpha)).astype(np.float32), mode="markers", marker=dict(size=10, opacity=0),
                 hovertext=hover, hoverinfo="text", name="hover", showlegend=False))
    traces += _centre_traces(centres, names, colours, dim)
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# θ_yi histograms (Fig. 4a)


def _step_theta(item: Any) -> tuple[int, np.ndarray]:
    if hasattr(item, "theta_deg"):
        return int(item.step), np.asarray(item.theta_deg, dtype=np.float64)
    step, theta = item
    return int(step), np.asarray(theta, dtype=np.float64)


def pick_start_middle_now(history: Sequence[Any]) -> list[tuple[str, int, np.ndarray]]:
    """Fig. 4(a)'s three moments from a history of snapshots or (step, θ_deg) pairs, in step order.

    start = the first entry, now = the last, middle = the entry whose step is closest to their mean
    (ties to the earlier one), never start or now themselves.  Fewer entries give fewer moments:
    one → [now], two → [start, now].
    """
    items = [_step_theta(h) for h in history]
    if not items:
        return []
    if len(items) == 1:
        return [("now", *items[0])]
    first, last = items[0], items[-1]
    picked = [("start", *first)]
    if len(items) > 2:
        target = (first[0] + last[0]) / 2.0
        inner = items[1:-1]
        i = min(range(len(inner)), key=lambda t: (abs(inner[t][0] - target), t))
        picked.append(("middle", *inner[i]))
    picked.append(("now", *last))
    return picked


def theta_histogram_spec(history: Sequence[Any], bins: int = 36, title: str | None = None,
                         height: int = 340) -> dict[str, Any]:
    """Fig. 4(a): distribution of θ_yi (angle between x_i and W_yi, degrees) at start, middle and now.

    Fixed bins over [0°, 180°], each curve normalised to percent of its samples, with its mean as a
    dashed line.  Random initialisation starts near 90°; ArcFace training moves it towards ~30°.
    """
    edges = np.linspace(0.0, 180.0, bins + 1)
    traces, shapes, notes = [], [], []
    for row, (phase, step, theta) in enumerate(pick_start_middle_now(history)):
        theta = theta[np.isfinite(theta)]
        counts, _ = np.histogram(np.clip(theta, 0.0, 180.0), bins=edges)
        pct = 100.0 * counts / max(len(theta), 1)
        mean = float(theta.mean()) if len(theta) else float("nan")
        colour = PHASE_COLOURS[phase]
        label = f"{phase} (step {step})" + (f", mean {mean:.1f}°" if math.isfinite(mean) else "")
        traces.append(dict(type="scatter", x=edges.astype(np.float32), y=np.r_[pct, pct[-1]].astype(np.float32),
                           mode="lines", line=dict(shape="hv", color=colour, width=2.5),
                           fill="tozeroy", opacity=0.9, name=label,
                           hovertemplate="%{x:.0f}°+: %{y:.1f}%<extra>" + phase + "</extra>"))
        if math.isfinite(mean):
            shapes.append(dict(type="line", x0=mean, x1=mean, y0=0, y1=1, yref="paper",
                               line=dict(color=colour, dash="dash", width=2)))
            notes.append(dict(x=mean, y=1.0 - 0.1 * row, yref="paper", text=f"{mean:.0f}°", showarrow=False,
                              xanchor="right" if mean > 150 else "left", font=dict(color=colour, size=14),
                              bgcolor="rgba(255,255,255,0.6)"))
    layout = dict(
        title=dict(text=title or "θ<sub>y</sub> distribution (Fig. 4a)", x=0.5, xanchor="center"),
        height=height + 40, margin=dict(l=50, r=10, t=45, b=45), shapes=shapes, annotations=notes,
        xaxis=dict(range=[0, 180], tickvals=list(range(0, 181, 30)), ticksuffix="°",
                   title=dict(text="angle between x<sub>i</sub> and W<sub>y<sub>i</sub></sub>")),
        yaxis=dict(title=dict(text="% of samples"), rangemode="tozero"),
        # below the axis title: inside the plot it covered the bars and the mean labels
        legend=dict(font=dict(size=LEGEND_FONT - 2), orientation="h", x=0.5, xanchor="center", y=-0.22,
                    yanchor="top"),
        font=dict(size=14), uirevision="theta",
    )
    return {"data": traces, "layout": layout}


theta_histogram_figure = as_figure(theta_histogram_spec)


# ---------------------------------------------------------------------------------------------
# Curves


def _decimate(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, max_points).round().astype(int), n - 1])


def curves_spec(steps: Sequence[int], loss: Sequence[float], train_acc: Sequence[float],
                test_acc: Sequence[float | None] | None = None, title: str | None = None,
                max_points: int = 2000, height: int = 380) -> dict[str, Any]:
    """Loss (top) and train / test accuracy (bottom, fractions shown as %) against the optimizer step.

    ``test_acc`` may hold None where the test set was not evaluated; None and non-finite values are
    left out.  Long histories are thinned to ``max_points`` (first and last kept).
    """
    steps_a = np.asarray(steps, dtype=np.float64)
    idx = _decimate(len(steps_a), max_points)

    def series(values: Sequence[float | None] | None) -> tuple[np.ndarray, np.ndarray]:
        if values is None:
            return np.empty(0, np.float32), np.empty(0, np.float32)
        v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
        if len(v) != len(steps_a):
            raise ValueError(f"{len(v)} values for {len(steps_a)} steps")
        v, x = v[idx], steps_a[idx]
        ok = np.isfinite(v)
        return x[ok].astype(np.float32), v[ok].astype(np.float32)

    lx, ly = series(loss)
    ax, ay = series(train_acc)
    tx, ty = series(test_acc)
    untrained = len(steps_a) == 0 or steps_a.max() == steps_a.min()  # one point: no curve yet
    line_mode = "lines+markers" if untrained else "lines"
    traces = [
        dict(type="scatter", x=lx, y=ly, mode=line_mode, name="loss", line=dict(color="#0072B2", width=2),
             xaxis="x", yaxis="y"),
        dict(type="scatter", x=ax, y=ay, mode=line_mode, name="train acc", line=dict(color="#009E73", width=2),
             xaxis="x2", yaxis="y2"),
        dict(type="scatter", x=tx, y=ty, mode="lines+markers", name="test acc", marker=dict(size=5),
             line=dict(color="#D55E00", width=2, dash="dash"), xaxis="x2", yaxis="y2"),
    ]
    layout = dict(
        title=dict(text=title, x=0.5, xanchor="center") if title else None,
        height=height + 40, margin=dict(l=55, r=10, t=40 if title else 15, b=80), font=dict(size=14),
        xaxis=dict(anchor="y", matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.56, 1.0], title=dict(text="loss"), rangemode="tozero"),
        xaxis2=dict(anchor="y2", title=dict(text="step"), rangemode="tozero",
                    **({"range": [-2.0, max(100.0, float(steps_a.max(initial=0)) * 2)]} if untrained else {})),
        annotations=[dict(text="The curves grow here as the model trains: press Train or Step.", showarrow=False,
                          xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=14, color="#666"))]
        if untrained else [],
        yaxis2=dict(domain=[0.0, 0.44], title=dict(text="accuracy"), range=[0, 1.02], tickformat=".0%"),
        # below the step axis: above the plot, a narrow column wrapped it onto the title
        legend=dict(font=dict(size=LEGEND_FONT - 2), orientation="h", y=-0.2, yanchor="top", x=0.5,
                    xanchor="center"),
        hovermode="x unified", uirevision="curves",
    )
    return {"data": traces, "layout": layout}


curves_figure = as_figure(curves_spec)


def curves_from_history(history: Sequence[Any], **kwargs: Any) -> go.Figure:
    """:func:`curves_figure` from a list of snapshots (attributes step, loss, train_acc, test_acc)."""
    return curves_figure([h.step for h in history], [h.loss for h in history], [h.train_acc for h in history],
                         [h.test_acc for h in history], **kwargs)


# ---------------------------------------------------------------------------------------------
# Fig. 3 side by side


def snapshot_spec(snap: Any, title: str | None = None, class_names: Sequence[str] | None = None,
                  regions: dict[str, Any] | None = None, uirevision: str = "embedding", height: int = 560,
                  centres_label: str | None = None) -> dict[str, Any]:
    """:func:`embedding_spec` of a snapshot, with its sub-centres and flipped-label samples where it has them."""
    return embedding_spec(snap.embeddings, snap.labels, snap.centres, class_names=class_names, title=title,
                          regions=regions, all_classes=True, uirevision=uirevision, height=height,
                          centres_label=centres_label or CENTRES_NAME,
                          subcentres=getattr(snap, "subcentres", None), dominant=getattr(snap, "dominant", None),
                          noisy=getattr(snap, "noisy", None))


snapshot_figure = as_figure(snapshot_spec)


def compare_specs(left: Any, right: Any, titles: tuple[str, str] = ("Norm-Softmax", "ArcFace"),
                  class_names: Sequence[str] | None = None,
                  regions: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
                  height: int = 480, centres_labels: tuple[str | None, str | None] = (None, None)
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fig. 3: two snapshots as two embedding figures with identical axes, size, colours and legend.

    Each snapshot needs ``embeddings, labels, centres``; ``regions`` optionally adds each side's
    decision ring, e.g. ``(dict(mode="margin"), dict(m2=0.2, mode="margin"))``; ``centres_labels`` name
    each side's rays (None: class centres; see :func:`centres_name`).
    """
    specs = (snapshot_spec(left, titles[0], class_names, regions[0], "compare-left", height, centres_labels[0]),
             snapshot_spec(right, titles[1], class_names, regions[1], "compare-right", height, centres_labels[1]))
    for spec in specs:  # legends below: a longer legend on one side must not shrink its circle
        spec["layout"]["legend"] = {**spec["layout"]["legend"], "orientation": "h", "yanchor": "top", "y": -0.02,
                                    "x": 0.5, "xanchor": "center"}
    return specs[0], specs[1]


def compare_figures(left: Any, right: Any, titles: tuple[str, str] = ("Norm-Softmax", "ArcFace"),
                    class_names: Sequence[str] | None = None,
                    regions: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
                    height: int = 480, centres_labels: tuple[str | None, str | None] = (None, None)
                    ) -> tuple[go.Figure, go.Figure]:
    """:func:`compare_specs` as two plotly Figures."""
    a, b = compare_specs(left, right, titles, class_names, regions, height, centres_labels)
    return go.Figure(a), go.Figure(b)


def compare_figure(left: Any, right: Any, titles: tuple[str, str] = ("Norm-Softmax", "ArcFace"),
                   class_names: Sequence[str] | None = None,
                   regions: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
                   height: int = 480) -> go.Figure:
    """Fig. 3 as one figure: two panels (two xy plots in 2-D, two scenes in 3-D), one shared legend."""
    a, b = compare_figures(left, right, titles, class_names, regions, height)
    dim = np.asarray(left.centres).shape[1]
    layout = _layout(dim, None, "compare", height)
    traces: list[Any] = list(a.data)
    shown = {t.name for t in a.data if t.showlegend is not False}
    for t in b.data:
        t = t.to_plotly_json()
        t["showlegend"] = t.get("showlegend") is not False and t.get("name") not in shown
        if dim == 2:
            t.update(xaxis="x2", yaxis="y2")
        else:
            t["scene"] = "scene2"
        traces.append(t)
    domains = ([0.0, 0.49], [0.51, 1.0])
    notes = [dict(text=titles[i], x=sum(domains[i]) / 2, y=1.0, xref="paper", yref="paper", showarrow=False,
                  xanchor="center", yanchor="bottom", font=dict(size=18)) for i in range(2)]
    layout.update(annotations=notes, margin=dict(l=10, r=10, t=40, b=10),
                  legend=dict(layout["legend"], orientation="h", x=0.5, xanchor="center", y=0, yanchor="top"))
    if dim == 2:
        layout["xaxis"] = dict(layout["xaxis"], domain=domains[0])
        layout["xaxis2"] = dict(layout["xaxis"], domain=domains[1], anchor="y2")
        layout["yaxis2"] = dict(layout["yaxis"], scaleanchor="x2", anchor="x2")
        layout["yaxis"] = dict(layout["yaxis"], anchor="x")
    else:
        layout["scene"] = dict(layout["scene"], domain=dict(x=domains[0], y=[0, 1]))
        layout["scene2"] = dict(layout["scene"], domain=dict(x=domains[1], y=[0, 1]))
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# Animation export


def _frame_title(snap: Any) -> str:
    parts = [f"step {int(snap.step)}"]
    if getattr(snap, "loss", None) is not None and math.isfinite(float(snap.loss)):
        parts.append(f"loss {float(snap.loss):.3f}")
    if getattr(snap, "train_acc", None) is not None:
        parts.append(f"train {100 * float(snap.train_acc):.1f}%")
    if getattr(snap, "test_acc", None) is not None:
        parts.append(f"test {100 * float(snap.test_acc):.1f}%")
    return " · ".join(parts)


def training_animation(snapshots: Sequence[Any], class_names: Sequence[str] | None = None,
                       title: str | None = None, margins: tuple[float, float, float] | None = None,
                       frame_ms: int = 120, height: int = 600) -> go.Figure:
    """A run as a plotly animation: one frame per snapshot, a play / pause button and a step slider.

    Works offline once written with ``fig.write_html(path, include_plotlyjs=True)``.  Every frame has
    the same traces (one per class, empty if absent).  ``margins=(m1, m2, m3)`` adds the 2-D decision
    ring with margin, scaled per frame by ``snapshot.margin_scale`` when present (warm-up):
    (1 + (m1 − 1)·r, m2·r, m3·r).  Regions are not animated in 3-D.
    """
    if not snapshots:
        raise ValueError("no snapshots to animate")
    first = snapshots[0]
    n, dim = np.asarray(first.centres).shape
    names = _names(n, class_names)

    def frame_traces(snap: Any) -> list[dict[str, Any]]:
        regions = None
        if margins is not None and dim == 2:
            r = float(getattr(snap, "margin_scale", 1.0) or 0.0)
            m1, m2, m3 = margins
            regions = dict(m1=1 + (m1 - 1) * r, m2=m2 * r, m3=m3 * r, mode="margin")
        return _embedding_traces(snap.embeddings, snap.labels, snap.centres, names, None, regions, True,
                                 POINT_JITTER)[1][1:]  # [0] is the static circle / sphere

    per_frame = [frame_traces(s) for s in snapshots]
    dynamic_ids = list(range(1, 1 + len(per_frame[0])))
    redraw = True  # also for 2-D: without a redraw the frame titles (step, loss, accuracy) stay stale
    frames = [go.Frame(name=str(i), data=tr, traces=dynamic_ids,
                       layout=dict(title=dict(text=(title + " — " if title else "") + _frame_title(s))))
              for i, (s, tr) in enumerate(zip(snapshots, per_frame, strict=True))]
    play = dict(frame=dict(duration=frame_ms, redraw=redraw), transition=dict(duration=0), fromcurrent=True,
                mode="immediate")
    pause = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")
    slider = dict(active=0, x=0.08, len=0.9, y=0, pad=dict(t=30), currentvalue=dict(visible=False),
                  steps=[dict(label=str(int(s.step)), method="animate",
                              args=[[str(i)], dict(mode="immediate", frame=dict(duration=0, redraw=redraw),
                                                   transition=dict(duration=0))])
                         for i, s in enumerate(snapshots)])
    layout = _layout(dim, (title + " — " if title else "") + _frame_title(first), "animation", height)
    layout.update(
        margin=dict(l=10, r=10, t=50, b=80),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=0, xanchor="left", yanchor="top",
                          pad=dict(t=30, r=10), showactive=False,
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="❚❚ Pause", method="animate", args=[[None], pause])])],
        sliders=[slider],
    )
    if dim == 2:
        # A fixed-size square plot area: plotly.js loses scaleanchor/constrain="domain" once frames play.
        width, side = height + 320, height - 180
        layout.update(width=width, autosize=False, margin=dict(l=10, r=10, t=50, b=130, autoexpand=False),
                      xaxis=dict(layout["xaxis"], constrain=None, domain=[0.0, side / (width - 20)]),
                      yaxis=dict(layout["yaxis"], constrain=None, scaleanchor=None, scaleratio=None))
        layout["legend"] = dict(layout["legend"], x=side / (width - 20) + 0.03, xanchor="left")
    return go.Figure(data=[_background(dim), *per_frame[0]], layout=layout, frames=frames)


__all__ = [
    "add_decision_regions", "circle_regions", "class_symbol", "compare_figure", "compare_figures",
    "curves_figure", "curves_from_history", "decision_regions_figure", "embedding_figure", "icosphere",
    "palette", "pick_start_middle_now", "region_labels", "region_runs", "sphere_mesh",
    "theta_histogram_figure", "training_animation",
]
