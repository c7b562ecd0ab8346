"""Figures for Table 3 and Fig. 6/7: pair-angle histograms and our angle statistics beside the paper's.

Pure functions, arrays in and a plotly Figure out (no Streamlit).  Colours are Okabe–Ito (colour-blind
safe): positive pairs blue, negative pairs vermillion, both half transparent, so where they overlap the
bars are darker whatever one's colour vision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .style import OKABE_ITO

POSITIVE_COLOUR = OKABE_ITO["blue"]
NEGATIVE_COLOUR = OKABE_ITO["vermillion"]
#: One colour per Table-3 column (NS, ArcFace, IntraL, InterL, TripletL).
COLUMN_COLOURS = {"NS": OKABE_ITO["orange"], "ArcFace": OKABE_ITO["blue"], "IntraL": OKABE_ITO["green"],
                  "InterL": OKABE_ITO["purple"], "TripletL": OKABE_ITO["sky_blue"]}
#: columns beyond the paper's five (the losses after ArcFace): Paul Tol's muted colours, in order
EXTRA_COLOURS = ("#CC6677", "#332288", "#DDCC77", "#117733", "#882255", "#44AA99", "#999933")
#: The paper's values: white diamonds with a black outline, visible on light and dark themes and on any bar.
PAPER_MARKER = dict(symbol="diamond", size=11, color="#FFFFFF", line=dict(color=OKABE_ITO["black"], width=2))


def _values(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty: no pairs to draw")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def pair_angle_caption(overlap: float | None = None, accuracy: float | None = None,
                       tar: Mapping[str, float] | None = None) -> str:
    """"overlap 0.12 · verification 93.9 % · TAR@FAR=0.001 52.6 %" (the parts that are given)."""
    parts = []
    if overlap is not None:
        parts.append(f"overlap {overlap:.3f}")
    if accuracy is not None:
        parts.append(f"verification {100 * accuracy:.1f} %")
    for far, value in (tar or {}).items():
        parts.append(f"TAR@FAR={far} {100 * value:.1f} %")
    return " · ".join(parts)


def pair_angle_figure(pos_deg: Sequence[float] | np.ndarray, neg_deg: Sequence[float] | np.ndarray,
                      title: str | None = None, *, overlap: float | None = None, accuracy: float | None = None,
                      tar: Mapping[str, float] | None = None, bin_deg: float = 2.0, height: int = 320) -> go.Figure:
    """Fig. 6/7: overlaid histograms of the angles (degrees) of positive (same class) and negative pairs,
    each normalised to sum 1, over 0–180° in ``bin_deg`` bins.  The gap between the two is the visible
    margin; ``overlap`` (Σ min of the two histograms), verification ``accuracy`` (fraction) and ``tar``
    ({FAR text: TAR}) are written under the title."""
    pos, neg = _values(pos_deg, "pos_deg"), _values(neg_deg, "neg_deg")
    if not bin_deg > 0:
        raise ValueError(f"bin_deg must be > 0, got {bin_deg}")
    xbins = dict(start=0.0, end=180.0, size=float(bin_deg))
    fig = go.Figure([
        go.Histogram(x=pos.astype(np.float32), name=f"positive pairs ({pos.size:,})", histnorm="probability",
                     xbins=xbins, marker=dict(color=POSITIVE_COLOUR), opacity=0.6,
                     hovertemplate="%{x}°: %{y:.1%} of positive pairs<extra></extra>"),
        go.Histogram(x=neg.astype(np.float32), name=f"negative pairs ({neg.size:,})", histnorm="probability",
                     xbins=xbins, marker=dict(color=NEGATIVE_COLOUR), opacity=0.6,
                     hovertemplate="%{x}°: %{y:.1%} of negative pairs<extra></extra>"),
    ])
    caption = pair_angle_caption(overlap, accuracy, tar)
    text = title or ""
    if caption:
        text = f"{text}<br><sup>{caption}</sup>" if text else caption
    fig.update_layout(
        barmode="overlay", height=height, title=dict(text=text or None, x=0.5, xanchor="center"),
        margin=dict(l=50, r=10, t=70 if text else 20, b=45),
        xaxis=dict(title=dict(text="angle between the two embeddings (°)"), range=[0, 180], dtick=30),
        yaxis=dict(title=dict(text="share of pairs"), tickformat=".0%"),
        # inside, top right: beyond 120° is almost always empty (negative pairs rarely point apart)
        legend=dict(x=0.99, xanchor="right", y=0.99, yanchor="top", bgcolor="rgba(0,0,0,0)"),
    )
    return fig


def table3_figure(ours: Mapping[str, Mapping[str, float | None]],
                  paper: Mapping[str, Mapping[str, float | None]] | None = None,
                  rows: Sequence[str] = ("W-EC", "W-Inter", "Intra1", "Inter1", "Intra2", "Inter2"),
                  arrows: Mapping[str, str] | None = None, title: str | None = None, height: int = 420) -> go.Figure:
    """Table 3 as grouped bars: for every statistic one bar per column (``ours[column][statistic]``, degrees)
    and, when ``paper`` is given (``paper[statistic][column]``, as stats.PAPER_TABLE3), the paper's value as
    a diamond on the same bar.  Missing values (the triplet loss's W rows) are left out."""
    arrows = arrows or {}
    labels = [f"{r} {arrows.get(r, '')}".strip() for r in rows]
    fig = go.Figure()
    extra = iter(EXTRA_COLOURS * 2)
    for column, values in ours.items():
        colour = COLUMN_COLOURS.get(column) or next(extra, OKABE_ITO["black"])
        y = [values.get(r) for r in rows]
        fig.add_trace(go.Bar(x=labels, y=[np.nan if v is None else v for v in y], name=column, offsetgroup=column,
                             marker=dict(color=colour), legendgroup=column,
                             hovertemplate=f"{column}, %{{x}}: %{{y:.1f}}°<extra>ours</extra>"))
        if paper is not None:
            py = [paper.get(r, {}).get(column) for r in rows]
            fig.add_trace(go.Scatter(x=labels, y=[np.nan if v is None else v for v in py], mode="markers",
                                     offsetgroup=column, legendgroup=column, showlegend=False,
                                     name=f"{column} (paper)",
                                     marker=PAPER_MARKER,
                                     hovertemplate=f"{column}, %{{x}}: %{{y:.1f}}°<extra>paper</extra>"))
    if paper is not None:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="paper (CASIA, ResNet50)",
                                 marker=PAPER_MARKER))
    fig.update_layout(barmode="group", scattermode="group", height=height,
                      title=dict(text=title, x=0.5, xanchor="center") if title else None,
                      margin=dict(l=50, r=10, t=40 if title else 15, b=80),
                      yaxis=dict(title=dict(text="degrees"), rangemode="tozero"),
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0.5, xanchor="center"))
    return fig
