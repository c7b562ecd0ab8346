"""Live-training figures (Fig. 3, Fig. 4a, decision regions): right traces, fixed axes, right regions, no NaN."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest

from arcface_viz.plots import sphere as ps

ARCFACE_GAP_DEG = math.degrees(0.2)  # ≈ 11.46°


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ring(deg) -> np.ndarray:
    a = np.radians(np.asarray(deg, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=-1)


def toy(dim: int, n: int, k: int = 600, seed: int = 0, spread: float = 0.2):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n, dim)))
    labels = rng.integers(0, n, k)
    emb = unit(centres[labels] + spread * rng.normal(size=(k, dim)))
    return emb, labels, centres


def snapshot(dim: int, n: int, step: int, seed: int = 0, **kw) -> SimpleNamespace:
    emb, labels, centres = toy(dim, n, k=120, seed=seed)
    base = dict(step=step, loss=1.0 / (1 + step), train_acc=0.5, test_acc=None, embeddings=emb, labels=labels,
                centres=centres, theta_deg=np.full(50, 90.0 - step / 10), min_centre_angle_deg=30.0, lr=0.1,
                margin_scale=1.0, lam=None)
    base.update(kw)
    return SimpleNamespace(**base)


def numbers(values) -> np.ndarray:
    """A trace attribute as a flat float array, None separators dropped."""
    flat = np.asarray(values, dtype=object).ravel()
    return np.asarray([v for v in flat if v is not None], dtype=float)


def assert_all_finite(fig: go.Figure) -> None:
    traces = list(fig.data) + [t for fr in (fig.frames or ()) for t in fr.data]
    for tr in traces:
        for attr in ("x", "y", "z", "r", "theta", "customdata", "intensity", "surfacecolor"):
            v = getattr(tr, attr, None) if attr in tr else None
            if v is not None:
                assert np.isfinite(numbers(v)).all(), f"non-finite {attr} in trace {tr.name!r}"


def by_name(fig: go.Figure, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def class_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if (t.legendgroup or "").startswith("class") and t.mode == "markers"]


# ---------------------------------------------------------------------------------------------
# Embedding figure (Fig. 3)


def test_embedding_2d_one_trace_per_present_class_and_rays():
    emb, labels, centres = toy(2, 8)
    labels = np.where(labels == 7, 3, labels)  # class 7 has no sample in this snapshot
    fig = ps.embedding_figure(emb, labels, centres, class_names=[f"digit {j}" for j in range(8)], title="t")
    pts = class_traces(fig)
    assert [t.name for t in pts] == [f"digit {j}" for j in range(7)]
    assert all(t.type == "scatter" for t in pts)
    for j, t in enumerate(pts):
        assert len(t.x) == int(np.sum(labels == j))
    assert sum(len(t.x) for t in pts) == len(emb)
    rays = by_name(fig, "class centres W<sub>j</sub>")
    assert len(numbers(rays.x)) == 2 * len(centres) and list(rays.x).count(None) == len(centres)
    # Each ray goes from the origin along W_j.
    xs, ys = numbers(rays.x).reshape(-1, 2), numbers(rays.y).reshape(-1, 2)
    assert np.allclose(xs[:, 0], 0) and np.allclose(ys[:, 0], 0)
    assert np.allclose(unit(np.stack([xs[:, 1], ys[:, 1]], 1)), centres, atol=1e-6)
    assert len(by_name(fig, "centre tips").x) == len(centres)
    by_name(fig, "unit circle")
    assert fig.layout.uirevision
    assert_all_finite(fig)


def test_embedding_2d_points_stay_on_the_circle_and_do_not_flicker():
    emb, labels, centres = toy(2, 8)
    fig1 = ps.embedding_figure(emb, labels, centres)
    fig2 = ps.embedding_figure(emb, labels, centres)
    for a, b in zip(class_traces(fig1), class_traces(fig2), strict=True):
        assert np.array_equal(np.asarray(a.x), np.asarray(b.x))
        r = np.hypot(np.asarray(a.x, float), np.asarray(a.y, float))
        assert np.all(np.abs(r - 1) <= ps.POINT_JITTER + 1e-6)
    # Jitter is radial only: the direction of every point is its embedding's direction.
    t0 = class_traces(fig1)[0]
    direction = unit(np.stack([np.asarray(t0.x, float), np.asarray(t0.y, float)], 1))
    assert np.allclose(direction, emb[labels == 0], atol=1e-5)


def test_embedding_axes_fixed_2d_and_3d():
    for dim in (2, 3):
        emb, labels, centres = toy(dim, 5)
        fig = ps.embedding_figure(emb * 3.0, labels, centres)  # un-normalised input is re-normalised
        if dim == 2:
            assert tuple(fig.layout.xaxis.range) == ps.AXIS_RANGE == tuple(fig.layout.yaxis.range)
            assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.autorange is False
        else:
            sc = fig.layout.scene
            for ax in (sc.xaxis, sc.yaxis, sc.zaxis):
                assert tuple(ax.range) == ps.AXIS_RANGE
            assert sc.aspectmode == "cube"
            assert sc.camera.eye.x is not None
        pts = np.concatenate([np.stack([np.asarray(getattr(t, a), float) for a in "xyz"[:dim]], 1)
                              for t in class_traces(fig)])
        assert np.abs(pts).max() <= ps.AXIS_RANGE[1]


def test_embedding_3d_sphere_points_and_ray_segments():
    emb, labels, centres = toy(3, 10)
    fig = ps.embedding_figure(emb, labels, centres, uirevision="run-1")
    sphere = by_name(fig, "sphere")
    assert sphere.type == "surface" and sphere.opacity < 0.5 and sphere.hoverinfo == "skip"
    assert np.allclose(np.asarray(sphere.x) ** 2 + np.asarray(sphere.y) ** 2 + np.asarray(sphere.z) ** 2, 1,
                       atol=1e-5)
    pts = class_traces(fig)
    assert len(pts) == 10 and all(t.type == "scatter3d" for t in pts)
    r = np.concatenate([np.sqrt(sum(np.asarray(getattr(t, a), float) ** 2 for a in "xyz")) for t in pts])
    assert np.allclose(r, 1, atol=1e-5)  # no radial jitter in 3-D
    rays = by_name(fig, "class centres W<sub>j</sub>")
    assert rays.type == "scatter3d"
    for a in "xyz":
        assert len(numbers(getattr(rays, a))) == 2 * len(centres)
    assert fig.layout.uirevision == "run-1"
    assert_all_finite(fig)


def test_all_classes_keeps_a_trace_for_every_class():
    emb, labels, centres = toy(2, 6)
    keep = labels < 3
    fig = ps.embedding_figure(emb[keep], labels[keep], centres, all_classes=True)
    pts = class_traces(fig)
    assert len(pts) == 6 and [len(t.x) for t in pts[3:]] == [0, 0, 0]


def test_non_finite_rows_are_left_out():
    emb, labels, centres = toy(2, 4, k=40)
    emb[5] = np.nan
    fig = ps.embedding_figure(emb, labels, centres)
    assert sum(len(t.x) for t in class_traces(fig)) == 39
    assert_all_finite(fig)


def test_hover_angle_is_theta_to_own_centre():
    centres = ring([0, 90, 180])
    emb = ring([0, 30, 150])
    fig = ps.embedding_figure(emb, np.array([0, 1, 2]), centres)
    thetas = [float(np.asarray(t.customdata)[0]) for t in class_traces(fig)]
    assert thetas == pytest.approx([0.0, 60.0, 30.0], abs=0.1)
    custom = ps.embedding_figure(emb, np.array([0, 1, 2]), centres, hover_text=["a", "b", "c"])
    assert [t.hovertext[0] for t in class_traces(custom)] == ["a", "b", "c"]


def test_mismatched_lengths_and_bad_dimension_raise():
    emb, labels, centres = toy(2, 3)
    with pytest.raises(ValueError):
        ps.embedding_figure(emb, labels[:-1], centres)
    with pytest.raises(ValueError):
        ps.embedding_figure(np.ones((4, 4)), np.zeros(4, int), np.eye(4))


def test_palette_is_okabe_ito_up_to_8_and_distinct_up_to_10():
    assert ps.palette(8) == list(ps.CLASS_COLOURS)
    assert len(set(ps.palette(10))) == 10
    # Beyond the palette the colours repeat but the (colour, marker) pairs stay distinct.
    pairs = {(c, ps.class_symbol(j, 14)) for j, c in enumerate(ps.palette(14))}
    assert len(pairs) == 14


# ---------------------------------------------------------------------------------------------
# Decision regions


def test_plain_regions_nearest_centre_wins():
    centres = ring([0, 90, 180])
    lab = ps.region_labels(ring([10, 100, 170, 225, 300, 44, 46]), centres, mode="plain")
    assert lab.tolist() == [0, 1, 2, 2, 0, 0, 1]


def test_norm_softmax_has_no_margin_gap():
    _, lab = ps.circle_regions(ring([0, 45, 120, 200, 300]), mode="margin")
    assert (lab >= 0).all()


def test_arcface_gap_is_m2_wide_around_the_bisector():
    centres = ring([0, 90])
    alpha, lab = ps.circle_regions(centres, m2=0.2, mode="margin", n_dirs=3600)
    deg = np.degrees(alpha)
    near = np.abs(deg - 45) < 20
    gap = deg[near & (lab == -1)]
    assert gap.max() - gap.min() == pytest.approx(ARCFACE_GAP_DEG, abs=0.2)
    assert (gap.max() + gap.min()) / 2 == pytest.approx(45, abs=0.1)
    # Outside the gap the nearest centre keeps its region.
    assert set(lab[near & (deg < gap.min())]) == {0} and set(lab[near & (deg > gap.max())]) == {1}
    # A larger margin gives a wider gap; plain mode has none.
    _, lab_big = ps.circle_regions(centres, m2=0.4, mode="margin", n_dirs=3600)
    assert np.sum(lab_big == -1) > np.sum(lab == -1)
    assert (ps.circle_regions(centres, m2=0.4, mode="plain")[1] >= 0).all()


def test_cosface_gap_matches_its_boundary():
    # CosFace: class 0 wins with margin iff cos θ0 − m3 > cos θ1 = sin θ0 (centres at 0° and 90°).
    m3 = 0.2
    _, lab = ps.circle_regions(ring([0, 90]), m3=m3, mode="margin", n_dirs=3600)
    alpha = np.degrees((np.arange(3600) + 0.5) * 2 * np.pi / 3600)
    th = np.radians(alpha)
    first_quadrant = alpha < 90
    expected_gap = (np.abs(np.cos(th) - np.sin(th)) < m3) & first_quadrant
    assert np.array_equal(lab[first_quadrant] == -1, expected_gap[first_quadrant])


def test_region_runs_wrap_around():
    lab = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    runs = ps.region_runs(lab)
    assert [r[0] for r in runs] == [1, 0]
    step = 2 * np.pi / 8
    assert runs[0][1:] == pytest.approx((2 * step, 5 * step))
    assert runs[1][1:] == pytest.approx((5 * step, 10 * step))  # wraps past 2π
    assert ps.region_runs(np.zeros(5, int)) == [(0, 0.0, 2 * np.pi)]


def gap_angles(fig: go.Figure) -> np.ndarray:
    gap = [t for t in fig.data if t.name.startswith("margin gap")]
    assert len(gap) == 1
    return np.degrees(np.arctan2(numbers(gap[0].y), numbers(gap[0].x))) % 360


def test_regions_figure_margin_mode_draws_the_grey_gap():
    centres = ring([0, 90])
    fig = ps.decision_regions_figure(centres, m2=0.2, mode="margin")
    region = [t for t in fig.data if t.name.startswith("region:")]
    assert [t.name for t in region] == ["region: class 0", "region: class 1"]
    assert all(t.fill == "toself" for t in region)
    ang = gap_angles(fig)
    near = ang[np.abs(ang - 45) < 20]
    assert near.max() - near.min() == pytest.approx(ARCFACE_GAP_DEG, abs=0.3)
    assert_all_finite(fig)
    plain = ps.decision_regions_figure(centres, mode="plain")
    assert not [t for t in plain.data if t.name.startswith("margin gap")]
    assert tuple(plain.layout.xaxis.range) == ps.AXIS_RANGE


def test_regions_figure_hover_probability_uses_s_and_margin():
    centres = ring([0, 90])
    lo = ps.decision_regions_figure(centres, s=4.0, m2=0.2, mode="margin")
    hi = ps.decision_regions_figure(centres, s=30.0, m2=0.2, mode="margin")

    def p_at_centre(fig):  # first hover point is α = 1°, next to W_0
        text = by_name(fig, "hover").hovertext[0]
        return float(text.split("p<sub>k</sub> = ")[1].split(" ")[0])

    assert p_at_centre(hi) > p_at_centre(lo)


def test_embedding_with_regions_ring_2d_and_sphere_3d():
    emb, labels, _ = toy(2, 8)
    centres = ring(np.arange(8) * 45.0)  # 45° apart: every class keeps a region beside the 11.5° gaps
    fig = ps.embedding_figure(emb, labels, centres, regions=dict(m2=0.2, mode="margin"))
    region = [t for t in fig.data if t.name.startswith("region:")]
    assert len(region) == 8
    gap = [t for t in fig.data if t.name.startswith("margin gap")][0]
    assert "(26% of the circle)" in gap.name  # 8 gaps of 0.2 rad out of 2π
    r = np.hypot(numbers(region[0].x), numbers(region[0].y))
    assert r.min() == pytest.approx(ps.RING[0], abs=1e-3) and r.max() == pytest.approx(ps.RING[1], abs=1e-3)
    assert len(class_traces(fig)) == 8  # the ring adds no points traces
    assert_all_finite(fig)

    emb3, labels3, centres3 = toy(3, 6)
    fig3 = ps.embedding_figure(emb3, labels3, centres3, regions=dict(m2=0.3, mode="margin"))
    assert not [t for t in fig3.data if t.name == "sphere"]
    mesh = by_name(fig3, "decision regions (grey: margin gap)")
    _, faces = ps.icosphere()
    assert mesh.type == "mesh3d" and mesh.intensitymode == "cell" and len(mesh.intensity) == len(faces)
    assert_all_finite(fig3)
    # add_decision_regions on an existing figure does the same.
    plain = ps.add_decision_regions(ps.embedding_figure(emb3, labels3, centres3), centres3, m2=0.3)
    assert [t.type for t in plain.data].count("mesh3d") == 1 and "sphere" not in [t.name for t in plain.data]


def test_sphere_regions_nearest_centre_and_gap_on_bisector():
    centres = np.eye(3)
    dirs = unit(np.array([[1.0, 0.1, 0.0], [0.1, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    assert ps.region_labels(dirs, centres, mode="plain").tolist()[:2] == [0, 2]
    assert ps.region_labels(dirs, centres, m2=0.2, mode="margin").tolist() == [0, 2, -1, -1]
    fig = ps.decision_regions_figure(centres, m2=0.2, mode="margin")
    mesh = [t for t in fig.data if t.type == "mesh3d"][0]
    # Intensity 0 is the gap, j+1 is class j: all classes and the gap occur.
    assert set(np.unique(np.asarray(mesh.intensity)).tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert_all_finite(fig)


def test_region_mode_is_checked():
    with pytest.raises(ValueError):
        ps.region_labels(ring([0]), ring([0, 90]), mode="grey")


# ---------------------------------------------------------------------------------------------
# θ histogram (Fig. 4a)


def test_pick_start_middle_now():
    hist = [(s, np.full(3, float(s))) for s in (0, 10, 20, 30, 40, 100)]
    picked = ps.pick_start_middle_now(hist)
    assert [(p[0], p[1]) for p in picked] == [("start", 0), ("middle", 40), ("now", 100)]
    assert picked[1][2][0] == 40.0
    assert [p[0] for p in ps.pick_start_middle_now(hist[:2])] == ["start", "now"]
    assert [(p[0], p[1]) for p in ps.pick_start_middle_now(hist[:1])] == [("now", 0)]
    assert ps.pick_start_middle_now([]) == []
    # Snapshots work too; evenly spaced steps pick the middle one.
    snaps = [snapshot(2, 3, step) for step in range(0, 110, 10)]
    assert [p[1] for p in ps.pick_start_middle_now(snaps)] == [0, 50, 100]


def test_theta_histogram_fixed_bins_normalised_with_means():
    rng = np.random.default_rng(0)
    hist = [(0, rng.normal(90, 10, 4000)), (500, rng.normal(60, 10, 1000)), (1000, rng.normal(30, 5, 2000))]
    fig = ps.theta_histogram_figure(hist, bins=36)
    assert len(fig.data) == 3
    assert [t.name.split(" (")[0] for t in fig.data] == ["start", "middle", "now"]
    for t, (_, theta) in zip(fig.data, hist, strict=True):
        x, y = np.asarray(t.x, float), np.asarray(t.y, float)
        assert np.allclose(x, np.linspace(0, 180, 37))
        assert y[:-1].sum() == pytest.approx(100.0, abs=0.01)  # percent of samples, last value repeats for hv
        assert x[np.argmax(y[:-1])] == pytest.approx(theta.mean(), abs=10)
    assert list(fig.layout.xaxis.range) == [0, 180]
    means = sorted(sh.x0 for sh in fig.layout.shapes)
    assert means == pytest.approx(sorted(th.mean() for _, th in hist), abs=1e-6)
    assert fig.layout.legend.y < 0  # below the plot: inside it covered the bars and the mean labels
    assert_all_finite(fig)


def test_theta_histogram_mean_label_near_180_stays_inside():
    fig = ps.theta_histogram_figure([(0, np.full(50, 170.0))])
    assert fig.layout.annotations[0].xanchor == "right"


def test_theta_histogram_ignores_nan_and_empty_history():
    fig = ps.theta_histogram_figure([(0, np.array([10.0, np.nan, 20.0]))])
    assert len(fig.data) == 1 and np.asarray(fig.data[0].y, float)[:-1].sum() == pytest.approx(100)
    assert_all_finite(fig)
    assert len(ps.theta_histogram_figure([]).data) == 0


# ---------------------------------------------------------------------------------------------
# Curves


def test_curves_drop_missing_test_points_and_keep_axes():
    steps = np.arange(0, 100, 10)
    test_acc = [None, 0.2, None, 0.5, None, float("nan"), None, 0.8, None, 0.9]
    fig = ps.curves_figure(steps, np.linspace(2, 0.1, 10), np.linspace(0.1, 1, 10), test_acc)
    loss, train, test = fig.data
    assert len(loss.x) == len(train.x) == 10
    assert np.asarray(test.x).tolist() == [10, 30, 70, 90]
    assert list(fig.layout.yaxis2.range) == [0, 1.02] and test.yaxis == "y2" and loss.yaxis == "y"
    assert_all_finite(fig)
    with pytest.raises(ValueError):
        ps.curves_figure(steps, np.ones(9), np.ones(10))


def test_curves_before_training_show_the_point_and_say_what_comes():
    """At step 0 there is one point: drawn as markers on a 0-based step axis, with a hint, not an empty
    chart centred on step 0; once trained, lines and no hint."""
    fig = ps.curves_figure([0], [2.3], [0.1], [0.1])
    assert all("markers" in t.mode for t in fig.data[:2])
    assert -5 < fig.layout.xaxis2.range[0] < 0 and fig.layout.xaxis2.range[1] >= 100  # the point's marker shows whole
    assert "press Train or Step" in fig.layout.annotations[0].text
    trained = ps.curves_figure([0, 20], [2.3, 1.1], [0.1, 0.6])
    assert trained.data[0].mode == "lines" and not trained.layout.annotations
    assert trained.layout.xaxis2.range is None


def test_curves_thin_long_histories_keep_ends():
    n = 10_000
    fig = ps.curves_figure(np.arange(n), np.linspace(1, 0, n), np.linspace(0, 1, n), max_points=500)
    x = np.asarray(fig.data[0].x)
    assert len(x) <= 501 and x[0] == 0 and x[-1] == n - 1


def test_curves_from_history():
    snaps = [snapshot(2, 3, s, test_acc=0.7 if s == 20 else None) for s in (0, 10, 20)]
    fig = ps.curves_from_history(snaps)
    assert np.asarray(fig.data[0].x).tolist() == [0, 10, 20] and np.asarray(fig.data[2].x).tolist() == [20]


# ---------------------------------------------------------------------------------------------
# Side by side (Fig. 3) and animation


@pytest.mark.parametrize("dim", [2, 3])
def test_compare_figures_match(dim):
    a, b = snapshot(dim, 8, 100, seed=1), snapshot(dim, 8, 100, seed=2)
    left, right = ps.compare_figures(a, b, titles=("Norm-Softmax", "ArcFace"),
                                     regions=(None, dict(m2=0.2, mode="margin")) if dim == 2 else (None, None))
    assert left.layout.title.text == "Norm-Softmax" and right.layout.title.text == "ArcFace"
    assert left.layout.height == right.layout.height
    if dim == 2:
        assert tuple(left.layout.xaxis.range) == tuple(right.layout.xaxis.range) == ps.AXIS_RANGE
        assert any(t.name.startswith("margin gap") for t in right.data)
    else:
        assert left.layout.scene.camera == right.layout.scene.camera
    assert [t.marker.color for t in class_traces(left)] == [t.marker.color for t in class_traces(right)]

    both = ps.compare_figure(a, b)
    second = [t for t in both.data if t["xaxis" if dim == 2 else "scene"] in ("x2", "scene2")]
    assert len(second) == len(both.data) // 2
    legend_names = [t.name for t in both.data if t.showlegend is not False and t.type != "surface"]
    assert len(legend_names) == len(set(legend_names))  # one legend entry per class
    assert_all_finite(both)


@pytest.mark.parametrize("dim", [2, 3])
def test_training_animation_one_frame_per_snapshot(dim, tmp_path):
    snaps = [snapshot(dim, 5, step, seed=step) for step in (0, 50, 100, 150)]
    snaps[1].labels = np.where(snaps[1].labels == 4, 0, snaps[1].labels)  # a class missing in one frame
    fig = ps.training_animation(snaps, title="ArcFace", margins=(1.0, 0.2, 0.0))
    assert len(fig.frames) == len(snaps)
    n_dynamic = len(fig.data) - 1
    for fr in fig.frames:
        assert len(fr.data) == n_dynamic and list(fr.traces) == list(range(1, 1 + n_dynamic))
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "50", "100", "150"]
    assert "step 150" in fig.frames[-1].layout.title.text
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    assert_all_finite(fig)
    if dim == 2:  # the margin ring is animated too, and the circle stays round: a square plot area in pixels
        assert any(t.name.startswith("margin gap") for t in fig.frames[0].data)
        lay = fig.layout
        plot_w = (lay.xaxis.domain[1] - lay.xaxis.domain[0]) * (lay.width - lay.margin.l - lay.margin.r)
        assert plot_w == pytest.approx(lay.height - lay.margin.t - lay.margin.b)
        assert lay.margin.autoexpand is False and lay.autosize is False
    out = tmp_path / "run.html"
    fig.write_html(out, include_plotlyjs=True, auto_play=False)
    html = out.read_text(encoding="utf-8")
    assert "<script src=" not in html.replace('<script src="data:', "")  # plotly.js inlined, no CDN
    assert "Plotly.addFrames" in html or '"frames"' in html


def test_animation_scales_margin_with_warmup():
    snaps = [snapshot(2, 2, 0, margin_scale=0.0), snapshot(2, 2, 10, margin_scale=1.0)]
    for s in snaps:
        s.centres = ring([0, 90])
    fig = ps.training_animation(snaps, margins=(1.0, 0.4, 0.0))
    gaps = [[t for t in fr.data if t.name.startswith("margin gap")][0] for fr in fig.frames]
    assert len(numbers(gaps[0].x)) == 0 and len(numbers(gaps[1].x)) > 0
    with pytest.raises(ValueError):
        ps.training_animation([])
