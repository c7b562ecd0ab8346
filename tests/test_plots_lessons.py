"""The Fig. 4(b) and Fig. 5 figures build, carry the expected traces and plot only finite numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from arcface_viz import geometry as g
from arcface_viz.losses import target_logit
from arcface_viz.plots import curves as pc
from arcface_viz.plots import margins as pm

PI = math.pi


def numeric_data(fig: go.Figure) -> list[np.ndarray]:
    """Every x/y array of every trace, as floats."""
    out = []
    for tr in fig.data:
        for attr in ("x", "y"):
            v = getattr(tr, attr, None)
            if v is not None:
                out.append(np.asarray(v, dtype=float))
    return out


def assert_clean(fig: go.Figure) -> None:
    assert len(fig.data) > 0
    arrays = numeric_data(fig)
    assert arrays and all(a.size > 0 for a in arrays)
    for a in arrays:
        assert np.isfinite(a).all()
    assert fig.layout.title.text


def trace(fig: go.Figure, name: str) -> go.Scatter:
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def test_target_logit_figure_paper_range():
    fig = pc.target_logit_figure()
    assert_clean(fig)
    assert [t.name for t in fig.data] == [c.label for c in g.FIG4B_CURVES]
    arc = trace(fig, "ArcFace (1,0.5,0)")
    assert arc.x[0] == 20.0 and arc.x[-1] == 100.0
    np.testing.assert_allclose(arc.y, np.cos(np.radians(arc.x) + 0.5))
    assert tuple(fig.layout.xaxis.range) == (20.0, 100.0)
    assert fig.layout.yaxis.range[0] <= -1.2 and fig.layout.yaxis.range[1] >= 1.0
    assert len({t.line.color for t in fig.data}) == 7  # one colour per paper curve


def test_target_logit_figure_full_range_marks_theta_star_and_extension():
    fig = pc.target_logit_figure(full_range=True)
    assert_clean(fig)
    turning = [c for c in g.FIG4B_CURVES if c.theta_star is not None]
    assert {c.key for c in turning} == {"sphereface", "arcface", "cm1", "cm2"}
    for c in turning:
        marker = trace(fig, f"θ* of {c.label}")
        assert marker.x[0] == pytest.approx(math.degrees(c.theta_star))
        ext = trace(fig, f"{c.label}: monotonic extension")
        assert ext.line.dash == "dash" and ext.x[0] == pytest.approx(math.degrees(c.theta_star))
        np.testing.assert_allclose(ext.y, target_logit(np.radians(ext.x), *c.margins, monotonic=True))
    assert len(fig.data) == 7 + 2 * len(turning)
    assert fig.layout.xaxis.range[1] == 180.0
    assert fig.layout.yaxis.range[0] <= min(float(np.min(t.y)) for t in fig.data)


def test_target_logit_figure_monotonic_and_custom_curve():
    fig = pc.target_logit_figure([("mine", 1.2, 0.6, 0.1)], full_range=True, monotonic=True, points=37)
    assert_clean(fig)
    main = trace(fig, "mine")
    assert len(main.x) == 37
    np.testing.assert_allclose(main.y, target_logit(np.radians(main.x), 1.2, 0.6, 0.1, monotonic=True))
    assert np.all(np.diff(main.y) <= 1e-12)  # the training curve never turns back
    assert not any("extension" in (t.name or "") for t in fig.data)
    with pytest.raises(ValueError):
        pc.target_logit_figure([])


def test_sample_loss_figure_rows_and_values():
    fig = pc.sample_loss_figure(s=32.0, num_classes=100)
    assert_clean(fig)
    assert len(fig.data) == 2 * len(g.FIG4B_CURVES)
    arc = [t for t in fig.data if t.name == "ArcFace (1,0.5,0)"]
    loss_tr, grad_tr = (arc[0], arc[1]) if arc[0].yaxis == "y" else (arc[1], arc[0])
    loss, grad = g.sample_loss(np.radians(np.asarray(loss_tr.x)), 32.0, 100, 1, 0.5, 0)
    np.testing.assert_allclose(loss_tr.y, loss)
    np.testing.assert_allclose(grad_tr.y, grad)
    assert sum(t.showlegend is not False for t in fig.data) == len(g.FIG4B_CURVES)


@pytest.mark.parametrize("s,n,other", [(64.0, 100_000, -1.0), (1.0, 2, 1.0)])
def test_sample_loss_figure_finite_at_extremes(s, n, other):
    curves = [("hi", 2.0, 1.0, 0.6), ("lo", 0.8, 0.0, 0.0), g.FIG4B_BY_KEY["sphereface_a"]]
    assert_clean(pc.sample_loss_figure(curves, s=s, num_classes=n, other_cos=other))
    assert_clean(pc.sample_loss_figure(curves[:2], s=s, num_classes=n, easy_margin=True, full_range=False))


def test_theta_plane_figure_fig5_panels():
    fig = pm.theta_plane_figure()
    assert_clean(fig)
    assert [a.text for a in fig.layout.annotations][:4] == [c.label for c in g.FIG5_CURVES]
    boundaries = [t for t in fig.data if t.name == "class 1 boundary"]
    assert len(boundaries) == 4
    arc = boundaries[3]  # ArcFace panel: θ2 = θ1 + 28.65°
    np.testing.assert_allclose(np.asarray(arc.y) - np.asarray(arc.x), math.degrees(0.5), atol=1e-9)
    assert max(arc.y) <= 90.0 + 1e-9
    # class 2's boundary is the mirror image
    b2 = [t for t in fig.data if t.name == "class 2 boundary"][3]
    np.testing.assert_allclose(b2.x, arc.y)
    np.testing.assert_allclose(b2.y, arc.x)


@pytest.mark.parametrize("spec", [("ArcFace", 1, 0.5, 0), ("big", 2.0, 1.0, 0.6), ("neg", 0.8, 0.0, 0.0)])
@pytest.mark.parametrize("full", [False, True])
def test_theta_plane_figure_single_panel(spec, full):
    fig = pm.theta_plane_figure(spec, full=full)
    assert_clean(fig)
    top = 180.0 if full else 90.0
    assert tuple(fig.layout.xaxis.range) == (0, top)
    for t in fig.data:
        assert (np.asarray(t.x) <= top + 1e-9).all() and (np.asarray(t.y) <= top + 1e-9).all()


def test_circle_margin_figure_grey_arc_matches_width():
    phi = PI / 2
    fig = pm.circle_margin_figure(phi, 1, 0, 0.35, label="CosFace")
    assert_clean(fig)
    width = float(g.margin_width(phi, 1, 0, 0.35))
    assert f"{math.degrees(width):.2f}°" in fig.layout.title.text
    grey = [t for t in fig.data if t.legendgroup == f"r{g.NEITHER}"]
    assert grey  # margin arcs on both sides of the circle
    angles = [np.arctan2(t.y, t.x) for t in grey]
    near = [a for a in angles if 0 < np.mean(a) < phi]  # the arc between W1 and W2
    assert len(near) == 1
    span = near[0].max() - near[0].min()
    assert span == pytest.approx(width, abs=math.radians(1.1))
    names = {t.name for t in fig.data}
    assert {"class 1 boundary", "class 2 boundary", "W1", "W2"} <= names


@pytest.mark.parametrize("phi,m", [(0.2, (1, 0.5, 0)), (PI, (0.8, 0, 0)), (0.0, (1, 0, 0)), (PI, (2, 1, 0.6))])
def test_circle_margin_figure_edge_cases(phi, m):
    fig = pm.circle_margin_figure(phi, *m)
    assert_clean(fig)
    if m == (1, 0.5, 0):
        assert "swallows" in fig.layout.title.text
    if m == (0.8, 0, 0):
        assert "overlap" in fig.layout.title.text


def test_margin_width_figure_flat_for_arcface_only():
    fig = pm.margin_width_figure()
    assert_clean(fig)
    arc = trace(fig, "ArcFace (m2=0.5)")
    x, y = np.asarray(arc.x), np.asarray(arc.y)
    past = x > math.degrees(0.5) + 0.5
    np.testing.assert_allclose(y[past], math.degrees(0.5), atol=1e-6)
    for name in ("CosFace (m3=0.35)", "SphereFace (m1=1.35)"):
        t = trace(fig, name)
        ys = np.asarray(t.y)[np.asarray(t.x) > 60]
        assert ys.max() - ys.min() > 5.0  # degrees: visibly not flat
    assert_clean(pm.margin_width_figure([("x", *m) for m in itertools.product((0.8, 2.0), (0, 1), (0, 0.6))]))


def test_softmax_plane_figure():
    fig = pm.softmax_plane_figure([1.0, 0.3], [-0.2, 1.0], 0.5, 0.0)
    assert_clean(fig)
    line = trace(fig, "boundary")
    pts = np.column_stack([line.x, line.y])
    np.testing.assert_allclose(pts @ np.array([1.2, -0.7]) + 0.5, 0.0, atol=1e-12)
    assert {"class 1 wins", "class 2 wins", "W1", "W2"} <= {t.name for t in fig.data}
    assert "‖x‖" in fig.layout.title.text
    # W1 = W2 (no line) and a line outside the square still give a drawable figure
    assert_clean(pm.softmax_plane_figure([1.0, 0.0], [1.0, 0.0], 0.3, 0.0))
    far = pm.softmax_plane_figure([1.0, 0.0], [0.0, 1.0], 50.0, 0.0)
    assert_clean(far)
    assert "outside" in far.layout.title.text


def test_region_polygons_cover_the_right_side():
    fig = pm.softmax_plane_figure([1.0, 0.0], [-1.0, 0.0])
    c1 = trace(fig, "class 1 wins")
    assert (np.asarray(c1.x) >= -1e-12).all()  # boundary x = 0, class 1 on the right
