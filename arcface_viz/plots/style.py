"""Shared look of every figure: the colour-blind-safe palette, presenter styling and exports."""

from __future__ import annotations

import base64
import copy
import functools
import re
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

# Okabe–Ito, the colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}


def presenter_style(fig: go.Figure, scale: float = 1.45) -> go.Figure:
    """A copy of ``fig`` for a projector: fonts, lines and markers ``scale`` times larger, taller plot."""
    return go.Figure(presenter_spec(fig.to_dict(), scale))


def presenter_spec(spec: dict[str, Any], scale: float = 1.45) -> dict[str, Any]:
    """:func:`presenter_style` of a figure given as a plain dict (``{"data": [...], "layout": {...}}``, e.g.
    from :func:`wire`); returns a new dict and leaves ``spec`` as it was."""
    spec = {"data": [copy.deepcopy(t) for t in spec.get("data", [])], "layout": dict(spec.get("layout") or {})}
    layout = spec["layout"]

    def sub(key: str) -> dict[str, Any]:  # a nested layout dict, copied before it is changed
        value = layout.get(key)
        layout[key] = {"text": value} if isinstance(value, str) else dict(value or {})
        return layout[key]

    base = (layout.get("font") or {}).get("size") or 14
    big = round(base * scale)
    sub("font")["size"] = big
    hover = sub("hoverlabel")
    hover["font"] = {**(hover.get("font") or {}), "size": big}
    for key in ("title", "legend"):
        font = (layout.get(key) or {}).get("font") if isinstance(layout.get(key), dict) else None
        if font and font.get("size"):
            sub(key)["font"] = {**font, "size": round(font["size"] * scale)}
    for trace in spec["data"]:
        line, marker = trace.get("line"), trace.get("marker")
        if isinstance(line, dict) and line.get("width") is not None:
            line["width"] = line["width"] * scale
        if isinstance(marker, dict) and isinstance(marker.get("size"), (int, float)):
            marker["size"] = marker["size"] * scale
    title = layout.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if text:
        title = sub("title")
        title["text"] = wrap_title(text)
        lines = title["text"].count("<br>") + 1
        size = (title.get("font") or {}).get("size") or big
        top = (layout.get("margin") or {}).get("t")
        title.update(y=1.0, yref="container", yanchor="top", pad={**(title.get("pad") or {}), "t": 12})
        sub("margin")["t"] = max(80 if top is None else top, int(lines * size * 1.4) + 30)
    if layout.get("height"):
        layout["height"] = int(layout["height"] * 1.15)
    return spec


# ---------------------------------------------------------------------------------------------
# Figures as plain dicts, ready for the browser

#: numpy dtypes plotly.js reads as typed arrays (its ``{"dtype", "bdata"}`` form).
_TYPED = {"f8": "f8", "f4": "f4", "i4": "i4", "u4": "u4", "i2": "i2", "u2": "u2", "i1": "i1", "u1": "u1"}


def typed_array(a: np.ndarray) -> dict[str, str] | list:
    """A numpy array as plotly.js's typed array ``{"dtype": "f4", "bdata": <base64>}``, as plotly's validators
    write them (int64 as int32 when it fits, else float64); strings, objects, booleans and empty arrays as a
    list."""
    a = np.asarray(a)
    if a.dtype.kind == "i" and a.dtype.itemsize == 8:
        a = a.astype(np.int32) if a.size == 0 or (a.min() >= -2**31 and a.max() < 2**31) else a.astype(np.float64)
    code = a.dtype.newbyteorder("<").str[1:] if a.dtype.kind in "iuf" else ""
    if code not in _TYPED or a.size == 0:
        return a.tolist()
    out: dict[str, Any] = {"dtype": _TYPED[code], "bdata": base64.b64encode(
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()).decode("ascii")}
    if a.ndim > 1:
        out["shape"] = ", ".join(str(n) for n in a.shape)
    return out


_ITEM_LISTS = ("annotations", "shapes", "images", "sliders", "updatemenus")  # dropped when empty, as plotly does


@functools.cache
def _template(name: str) -> dict[str, Any]:
    return pio.templates[name].to_plotly_json()


def default_template() -> dict[str, Any]:
    """The JSON of plotly's default template (Streamlit's own in the app), which a go.Figure would carry."""
    return _template(pio.templates.default)


_PLAIN = frozenset({float, int, str, bool, type(None)})


def wire(spec: dict[str, Any]) -> dict[str, Any]:
    """A figure given as a plain dict, as the browser gets it from a go.Figure: numpy arrays as typed arrays,
    the default template in the layout.  Skips plotly's validation of every property, which cost more than
    the rest of a live frame (bench/bench_classroom.py); the figure looks the same."""

    def conv(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return typed_array(v)
        if isinstance(v, dict):  # unset properties left out, as plotly does
            return {k: conv(x) for k, x in v.items() if x is not None and not (k in _ITEM_LISTS and not len(x))}
        if isinstance(v, (list, tuple)):
            if all(type(x) in _PLAIN for x in v):  # a list of numbers (an outline's x or y): as it is
                return list(v)
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    out = conv(spec)
    out.setdefault("layout", {}).setdefault("template", default_template())
    return out


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
