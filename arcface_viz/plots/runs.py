"""The curves of a full-scale training run (the Training runs page), from its ``metrics.jsonl`` records."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..fullscale.metrics import metric_series


def metrics_figure(records: list[dict[str, Any]], title: str = "") -> go.Figure:
    """Four panels over the training step: loss, samples/s, learning rate and verification accuracy (%)."""
    series = metric_series(records)
    tr = series["train"]
    fig = make_subplots(rows=2, cols=2, subplot_titles=("loss", "speed (samples/s)", "learning rate",
                                                        "verification accuracy (%)"),
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    fig.add_scatter(x=tr["step"], y=tr["loss"], mode="lines", name="loss", row=1, col=1)
    fig.add_scatter(x=tr["step"], y=tr["samples_per_sec"], mode="lines", name="samples/s", row=1, col=2)
    fig.add_scatter(x=tr["step"], y=tr["lr"], mode="lines", name="lr", row=2, col=1)
    for key, s in series.items():
        if key.startswith("val:"):
            fig.add_scatter(x=s["step"], y=[100 * a for a in s["acc"]], mode="lines+markers", name=key[4:],
                            row=2, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="step", row=2, col=c)
    fig.update_yaxes(range=[0, 100.5], row=2, col=2)
    fig.update_layout(title=title or None, height=560, margin=dict(l=40, r=20, t=60, b=40), legend_orientation="h")
    return fig
