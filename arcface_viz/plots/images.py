"""Figures and pictures of the image lesson (pages/mnist.py): arrays in, plotly Figure or PNG out.

- :func:`sphere_map_figure` — the sphere unrolled (longitude, latitude), so points can be clicked;
- :func:`attach_sample_ids` / :func:`selected_samples` — which drawn test images a click or box selected;
- :func:`curves_with_epochs` — loss and accuracy with the whole test set's accuracy at every epoch end;
- :func:`confusion_figure` — the test confusion matrix;
- :func:`png_bytes` / :func:`png_data_uri` / :func:`thumbnails` — grey images as PNG (Pillow) for the gallery.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .sphere import curves_figure, palette


def attach_sample_ids(fig: go.Figure, labels: np.ndarray, n_classes: int) -> go.Figure:
    """Put each drawn sample's position (0..k−1) into ``customdata`` of the per-class traces that
    plots.sphere.embedding_figure builds (legendgroup "class<j>", points in sample order), so a selection
    event says which images were clicked.  Use with ``hover_text`` (customdata is then free)."""
    lab = np.asarray(labels)
    for tr in fig.data:
        group = getattr(tr, "legendgroup", None) or ""
        if group.startswith("class") and group[5:].isdigit() and tr.mode == "markers":
            j = int(group[5:])
            if 0 <= j < n_classes:
                tr.customdata = np.flatnonzero(lab == j)
    return fig


def selected_samples(selection: Any) -> list[int]:
    """Sample positions from a Streamlit plotly selection (``event.selection``), in click order, unique."""
    points = (selection or {}).get("points", []) if isinstance(selection, Mapping) else \
        getattr(selection, "points", []) or []
    out: list[int] = []
    for p in points:
        cd = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if isinstance(cd, (int, float)) and not isinstance(cd, bool) and float(cd).is_integer():
            if int(cd) not in out:
                out.append(int(cd))
    return out


def sphere_map_figure(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray,
                      class_names: Sequence[str], hover_text: Sequence[str] | None = None,
                      title: str | None = None, height: int = 420, uirevision: str = "map") -> go.Figure:
    """The sphere unrolled (equirectangular): longitude atan2(y, x) and latitude asin(z), in degrees, so points
    can be clicked or box-selected (3-D scatter plots cannot be selected).  Centres W_j are diamonds;
    customdata holds each point's sample position."""
    emb = np.asarray(embeddings, dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    lab = np.asarray(labels)
    w = np.asarray(centres, dtype=np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)

    def lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.degrees(np.arctan2(v[:, 1], v[:, 0])), np.degrees(np.arcsin(np.clip(v[:, 2], -1.0, 1.0)))

    colours = palette(len(w))
    lon, lat = lonlat(emb) if len(emb) else (np.zeros(0), np.zeros(0))
    hover = np.asarray(hover_text, dtype=object) if hover_text is not None else None
    traces = []
    for j in range(len(w)):
        m = lab == j
        if not m.any():
            continue
        kw: dict[str, Any] = {"hovertext": hover[m].tolist(), "hoverinfo": "text"} if hover is not None else {}
        traces.append(go.Scatter(x=lon[m].astype(np.float32), y=lat[m].astype(np.float32), mode="markers",
                                 name=str(class_names[j]), legendgroup=f"class{j}", customdata=np.flatnonzero(m),
                                 marker=dict(size=6, color=colours[j], opacity=0.8,
                                             line=dict(color="rgba(0,0,0,0.3)", width=0.5)), **kw))
    wl, wt = lonlat(w)
    traces.append(go.Scatter(x=wl, y=wt, mode="markers", name="class centres W_j", hoverinfo="text",
                             hovertext=[f"W<sub>{j}</sub> ({class_names[j]})" for j in range(len(w))],
                             marker=dict(size=14, symbol="diamond", color=colours,
                                         line=dict(color="#333333", width=1.5))))
    layout = dict(title=dict(text=title, x=0.5, xanchor="center") if title else None, height=height,
                  margin=dict(l=50, r=10, t=40 if title else 15, b=40), uirevision=uirevision,
                  xaxis=dict(range=[-180, 180], title=dict(text="longitude (°)"), dtick=45, zeroline=False),
                  yaxis=dict(range=[-90, 90], title=dict(text="latitude (°)"), dtick=30, zeroline=False),
                  legend=dict(itemsizing="constant"), hovermode="closest")
    return go.Figure(data=traces, layout=layout)


def curves_with_epochs(curves: Mapping[str, np.ndarray], epoch_log: Sequence[Any],
                       title: str | None = None) -> go.Figure:
    """:func:`~arcface_viz.plots.sphere.curves_figure` (loss; train and drawn-sample test accuracy per snapshot)
    plus one marker per epoch end (``epoch_log``: items with ``step`` and ``test_acc``, the image trainer's
    EpochResult): the accuracy on the whole test set."""
    fig = curves_figure(curves["steps"], curves["loss"], curves["train_acc"], curves["test_acc"], title=title)
    fig.add_trace(go.Scatter(x=[r.step for r in epoch_log], y=[r.test_acc for r in epoch_log], mode="markers",
                             name="test acc, whole set (epoch ends)", xaxis="x2", yaxis="y2",
                             marker=dict(size=10, symbol="star", color="#CC79A7",
                                         line=dict(color="#333333", width=1)),
                             hovertemplate="epoch end, step %{x}: %{y:.2%} on the whole test set<extra></extra>"))
    return fig


def confusion_figure(conf: Any, title: str | None = None, height: int = 430) -> go.Figure:
    """Heatmap of the confusion matrix (``conf.matrix``, row = true class, ``conf.classes`` their names; the
    image trainer's Confusion), row-normalised colour (share of each true class), counts as text."""
    m = conf.matrix.astype(np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    names = [str(c) for c in conf.classes]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, text=conf.matrix, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="true %{y}, predicted %{x}: %{text} images (%{z:.1%} of %{y})<extra></extra>",
        colorbar=dict(title=dict(text="share"), tickformat=".0%")))
    fig.update_layout(title=dict(text=title, x=0.5, xanchor="center") if title else None, height=height,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10), uirevision="confusion",
                      xaxis=dict(title=dict(text="predicted"), type="category", side="bottom"),
                      yaxis=dict(title=dict(text="true"), type="category", autorange="reversed"))
    return fig


def png_bytes(image: np.ndarray, scale: int = 1, invert: bool = False) -> bytes:
    """A grey uint8 image (H, W) as PNG bytes, each pixel a ``scale``×``scale`` block."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a grey image (H, W), got shape {img.shape}")
    img = img.astype(np.uint8)
    if invert:
        img = 255 - img
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(image: np.ndarray, scale: int = 1, invert: bool = False) -> str:
    """``data:image/png;base64,…`` for an image (st.image and HTML <img> take it as a URL)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, scale, invert)).decode("ascii")


def thumbnails(images: np.ndarray, size: int = 56, invert: bool = False) -> list[str]:
    """Data URIs of uint8 images (N, H, W), scaled up by whole pixels to about ``size`` pixels wide."""
    imgs = np.asarray(images)
    scale = max(1, round(size / imgs.shape[-1])) if imgs.ndim == 3 and imgs.shape[-1] else 1
    return [png_data_uri(im, scale, invert) for im in imgs]
