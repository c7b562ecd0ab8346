"""Fig. 4(b) curves, one sample's loss and Fig. 5 decision-margin geometry against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from arcface_viz import geometry as g
from arcface_viz.losses import a_softmax_psi, a_softmax_target
from arcface_viz.params import LOSS_SPEC

PI = math.pi
M1 = (LOSS_SPEC["m1"].min, 1.0, 1.35, LOSS_SPEC["m1"].max)
M2 = (LOSS_SPEC["m2"].min, 0.5, LOSS_SPEC["m2"].max)
M3 = (LOSS_SPEC["m3"].min, 0.35, LOSS_SPEC["m3"].max)


# --- Fig. 4(b) ---------------------------------------------------------------------------------

def test_fig4b_presets_in_paper_order():
    assert [c.key for c in g.FIG4B_CURVES] == ["softmax", "sphereface_a", "sphereface", "arcface", "cosface",
                                               "cm1", "cm2"]
    margins = {c.key: c.margins for c in g.FIG4B_CURVES if c.kind == "margin"}
    assert margins == {"softmax": (1, 0, 0), "sphereface": (1.35, 0, 0), "arcface": (1, 0.5, 0),
                       "cosface": (1, 0, 0.35), "cm1": (1, 0.3, 0.2), "cm2": (0.9, 0.4, 0.15)}
    a = g.FIG4B_BY_KEY["sphereface_a"]
    assert a.kind == "a_softmax" and dict(a.params) == {"m": 4, "lam": 5.0}


def test_fig4b_values_by_hand():
    t = math.radians(60)
    c = g.FIG4B_BY_KEY
    assert c["arcface"].evaluate(t) == pytest.approx(math.cos(PI / 3 + 0.5))
    assert c["cosface"].evaluate(t) == pytest.approx(0.5 - 0.35)
    assert c["sphereface"].evaluate(t) == pytest.approx(math.cos(1.35 * PI / 3))
    # A-Softmax at 60°, m = 4: k = 1, ψ = −cos(240°) − 2 = −1.5; (5·0.5 − 1.5)/6 = 1/6
    assert c["sphereface_a"].evaluate(t) == pytest.approx(1 / 6)
    # CM2 at 100°: cos(0.9·100° + 0.4 rad) − 0.15
    assert c["cm2"].evaluate(math.radians(100)) == pytest.approx(math.cos(math.radians(90) + 0.4) - 0.15)


def test_theta_star_and_monotonic_extension():
    c = g.FIG4B_BY_KEY
    assert c["arcface"].theta_star == pytest.approx(PI - 0.5)
    assert c["sphereface"].theta_star == pytest.approx(PI / 1.35)
    assert c["cm2"].theta_star == pytest.approx((PI - 0.4) / 0.9)
    assert c["softmax"].theta_star is None and c["cosface"].theta_star is None
    assert c["sphereface_a"].theta_star is None
    # past θ*, raw ArcFace turns back up; the training curve is cos θ − m·sin m (insightface)
    assert c["arcface"].evaluate(PI) == pytest.approx(math.cos(PI + 0.5))
    assert c["arcface"].evaluate(PI, monotonic=True) == pytest.approx(-1 - 0.5 * math.sin(0.5))


def test_curve_table_columns_and_values():
    deg = np.array([20.0, 45.0, 100.0])
    table = g.curve_table(theta_deg=deg)
    assert list(table) == ["theta_deg"] + [c.key for c in g.FIG4B_CURVES]
    np.testing.assert_allclose(table["cosface"], np.cos(np.radians(deg)) - 0.35)
    np.testing.assert_allclose(table["sphereface_a"], a_softmax_target(np.radians(deg), 4, 5.0))
    dup = g.curve_table([("a", 1, 0.1, 0), ("b", 1, 0.2, 0)], deg)
    assert list(dup) == ["theta_deg", "custom", "custom_2"]
    np.testing.assert_allclose(dup["custom_2"], np.cos(np.radians(deg) + 0.2))


def test_theta_grid():
    assert g.theta_grid_deg()[[0, -1]].tolist() == [20.0, 100.0] and g.theta_grid_deg().size == 161
    full = g.theta_grid_deg(True, 7)
    assert full.tolist() == [0, 30, 60, 90, 120, 150, 180]
    with pytest.raises(ValueError):
        g.theta_grid_deg(points=1)


def test_bad_curves_rejected():
    with pytest.raises(ValueError):
        g.margin_curve("x", 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        g.Fig4bCurve("x", "x", "a_softmax", {"m": 2.5})
    with pytest.raises(ValueError):
        g.as_curve(("x", 1.0))


# --- one sample's loss ---------------------------------------------------------------------

def test_sample_loss_by_hand():
    # Norm-Softmax, θ = 90°, two classes, other logit 0: L = log 2, dL/dθ = −s·(−sin θ)·σ(0) = s/2
    loss, grad = g.sample_loss(PI / 2, s=10.0, num_classes=2)
    assert loss == pytest.approx(math.log(2)) and grad == pytest.approx(5.0)
    # ArcFace at θ = 0, n = 10, s = 64: L = log(1 + 9·e^{−64 cos 0.5})
    loss, _ = g.sample_loss(0.0, 64.0, 10, m2=0.5)
    assert loss == pytest.approx(math.log1p(9 * math.exp(-64 * math.cos(0.5))), rel=1e-12)
    # other_cos = 1: the other logits beat an unmarginned target everywhere: L(0) = log n
    loss, _ = g.sample_loss(0.0, 30.0, 7, other_cos=1.0)
    assert loss == pytest.approx(math.log(7))


@pytest.mark.parametrize("m1,m2,m3,easy", [(1.0, 0.0, 0.0, False), (1.35, 0.0, 0.0, False),
                                           (1.0, 0.5, 0.0, False), (1.0, 0.0, 0.35, False),
                                           (0.9, 0.4, 0.15, False), (1.0, 0.5, 0.0, True)])
@pytest.mark.parametrize("s,n,other", [(64.0, 10, 0.0), (8.0, 100_000, -0.3), (1.0, 2, 0.7)])
def test_sample_loss_matches_torch_cross_entropy(m1, m2, m3, easy, s, n, other):
    """Independent check: torch's cross entropy on the explicit logits, autograd for dL/dθ."""
    theta = np.linspace(0.05, 3.1, 40)
    t_star = (PI - m2) / m1
    cut = math.pi / 2 if easy else t_star
    theta = theta[np.abs(theta - cut) > 1e-3]
    loss, grad = g.sample_loss(theta, s, n, m1, m2, m3, other_cos=other, easy_margin=easy)
    for th, L, dL in zip(theta, loss, grad, strict=True):
        t = torch.tensor(th, dtype=torch.float64, requires_grad=True)
        if easy:
            f = torch.cos(t + m2) if math.cos(th) > 0 else torch.cos(t)
        elif th <= t_star:
            f = torch.cos(m1 * t + m2) - m3
        else:
            c = max(m2 * math.sin(m2), 1 + math.cos(t_star))
            f = torch.cos(t) - m3 - c
        logits = torch.cat([(s * f).reshape(1), torch.full((n - 1,), s * other, dtype=torch.float64)])
        ce = F.cross_entropy(logits[None], torch.tensor([0]))
        ce.backward()
        assert L == pytest.approx(ce.item(), rel=1e-9, abs=1e-12)
        assert dL == pytest.approx(t.grad.item(), rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("curve", g.FIG4B_CURVES, ids=lambda c: c.key)
def test_sample_loss_derivative_matches_finite_differences(curve):
    theta = np.linspace(0.02, PI - 0.02, 97)
    if curve.theta_star is not None:
        theta = theta[np.abs(theta - curve.theta_star) > 1e-3]
    h = 1e-6
    for s, n in ((64.0, 1000), (4.0, 3)):
        _, grad = curve.sample_loss(theta, s, n)
        fd = (curve.sample_loss(theta + h, s, n)[0] - curve.sample_loss(theta - h, s, n)[0]) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * s)


def test_a_softmax_sample_loss_by_hand():
    # θ = 60°, m = 4, λ = 5: target 1/6 at ‖x‖ = 1 (see above); n = 3, other logits 0
    loss, _ = g.a_softmax_sample_loss(PI / 3, 6.0, 3, m=4, lam=5.0)
    assert loss == pytest.approx(math.log(1 + 2 * math.exp(-1.0)))
    # m = 1 and λ = 0: ψ = cos θ, identical to Norm-Softmax
    th = np.linspace(0, PI, 11)
    np.testing.assert_allclose(g.a_softmax_sample_loss(th, 5.0, 4, m=1, lam=0.0)[0], g.sample_loss(th, 5.0, 4)[0])


def test_a_softmax_psi_slope_matches_finite_differences():
    th = np.linspace(0.01, PI - 0.01, 200)
    for m in range(1, 7):
        fd = (a_softmax_psi(th + 1e-6, m) - a_softmax_psi(th - 1e-6, m)) / 2e-6
        np.testing.assert_allclose(g.a_softmax_psi_slope(th, m), fd, atol=1e-4 * m * m)


def test_sample_loss_finite_over_every_slider_extreme():
    theta = np.concatenate([np.linspace(0.0, PI, 181), [1e-12, PI - 1e-12]])
    S = (LOSS_SPEC["s"].min, LOSS_SPEC["s"].max)
    for s, n, other, m1, m2, m3, easy in itertools.product(S, (2, 100_000), (-1.0, 0.0, 1.0), M1, M2, M3,
                                                           (False, True)):
        loss, grad = g.sample_loss(theta, s, n, m1, m2, m3, other_cos=other, easy_margin=easy)
        assert np.isfinite(loss).all() and np.isfinite(grad).all(), (s, n, other, m1, m2, m3, easy)
        assert (loss >= 0).all()
    for s, n, m, lam in itertools.product(S, (2, 100_000), range(1, 7), (0.0, 5.0, 100.0)):
        loss, grad = g.a_softmax_sample_loss(theta, s, n, m, lam)
        assert np.isfinite(loss).all() and np.isfinite(grad).all(), (s, n, m, lam)


def test_sample_loss_rejects_bad_arguments():
    for kwargs in ({"s": 0.0, "num_classes": 10}, {"s": 8.0, "num_classes": 1}, {"s": 8.0, "num_classes": 2.5},
                   {"s": 8.0, "num_classes": 10, "other_cos": 1.5}, {"s": float("nan"), "num_classes": 10}):
        with pytest.raises(ValueError):
            g.sample_loss(1.0, **kwargs)


# --- Fig. 5: boundaries on the (θ1, θ2) plane ----------------------------------------------------

def test_boundaries_by_hand():
    t = np.linspace(0.0, PI - 0.5, 50)
    np.testing.assert_allclose(g.boundary_theta2(t, 1, 0.5, 0), t + 0.5, atol=1e-12)  # ArcFace: θ2 = θ1 + m
    np.testing.assert_allclose(g.boundary_theta2(t, 1, 0, 0), t, atol=1e-12)  # Norm-Softmax: θ2 = θ1
    ts = np.linspace(0.0, PI / 1.35, 50)
    np.testing.assert_allclose(g.boundary_theta2(ts, 1.35, 0, 0), 1.35 * ts, atol=1e-7)  # SphereFace
    assert g.boundary_theta2(PI / 3, 1, 0, 0.35) == pytest.approx(math.acos(0.15))  # CosFace
    assert g.boundary_theta2(0.0, 1, 0, 0.35) == pytest.approx(math.acos(0.65))
    assert g.boundary_theta2(PI, 1, 0, 0.35) == pytest.approx(PI)  # f < −1: clipped, class 1 never wins


def test_decide_regions_by_hand():
    # ArcFace m = 0.5: class 1 wins iff θ2 > θ1 + 0.5
    assert g.decide(0.2, 0.8, 1, 0.5, 0) == g.CLASS1
    assert g.decide(0.2, 0.6, 1, 0.5, 0) == g.NEITHER
    assert g.decide(0.8, 0.2, 1, 0.5, 0) == g.CLASS2
    # negative margin: m1 = 0.8 at θ1 = θ2 = 1: cos 0.8 > cos 1 for both classes
    assert g.decide(1.0, 1.0, 0.8, 0, 0) == g.BOTH
    # Norm-Softmax: a tie on the diagonal is nobody's
    assert g.decide(0.7, 0.7, 1, 0, 0) == g.NEITHER


# --- Fig. 5: width on the circle -------------------------------------------------------------------

@pytest.mark.parametrize("m2", [0.05, 0.3, 0.5, 1.0])
def test_arcface_width_is_m2_for_every_phi(m2):
    phi = np.linspace(m2 + 1e-3, PI, 200)
    np.testing.assert_allclose(g.margin_width(phi, 1, m2, 0), m2, atol=1e-9)
    small = np.linspace(0.0, m2, 20)  # the margin swallows the whole arc
    np.testing.assert_allclose(g.margin_width(small, 1, m2, 0), small, atol=1e-12)
    r = g.width_range(0.0, PI, 1, m2, 0)
    assert r.constant and r.min == pytest.approx(m2, abs=1e-9) and r.max == pytest.approx(m2, abs=1e-9)
    assert r.swallow_angle == pytest.approx(m2)


def test_cosface_width_by_hand():
    # φ = 90°: cos t − m = sin t ⇒ √2·cos(t + π/4) = m ⇒ width = π/2 − 2t = π − 2·arccos(m/√2)
    m = 0.35
    assert g.margin_width(PI / 2, 1, 0, m) == pytest.approx(PI - 2 * math.acos(m / math.sqrt(2)), abs=1e-12)
    assert math.degrees(g.margin_width(PI / 2, 1, 0, m)) == pytest.approx(28.66, abs=0.005)
    # φ = 180°: cos t − m = −cos t ⇒ t = arccos(m/2)
    assert g.margin_width(PI, 1, 0, m) == pytest.approx(PI - 2 * math.acos(m / 2), abs=1e-12)
    assert g.swallow_angle(1, 0, m) == pytest.approx(math.acos(1 - m))
    r = g.width_range(0.0, PI, 1, 0, m)
    assert not r.constant and r.max - r.min > math.radians(20)
    assert "varies" in r.describe()


@pytest.mark.parametrize("m1", [1.2, 1.35, 2.0])
def test_sphereface_width_grows_with_phi(m1):
    # cos(m1·t) = cos(φ − t) ⇒ t = φ/(1 + m1) ⇒ width = φ·(m1 − 1)/(m1 + 1)
    phi = np.linspace(0.0, PI, 50)
    np.testing.assert_allclose(g.margin_width(phi, m1, 0, 0), phi * (m1 - 1) / (m1 + 1), atol=1e-9)
    assert not g.width_range(0.1, PI, m1, 0, 0).constant
    assert g.swallow_angle(m1, 0, 0) == 0.0


def test_norm_softmax_has_zero_width_and_negative_margin_overlaps():
    assert np.allclose(g.margin_width(np.linspace(0, PI, 20), 1, 0, 0), 0.0, atol=1e-12)
    # m1 = 0.8: t = φ/1.8 > φ/2, a negative width: the classes overlap by φ·0.2/1.8
    assert g.margin_width(PI / 2, 0.8, 0, 0) == pytest.approx(-PI / 2 * 0.2 / 1.8, abs=1e-9)


def test_circle_regions_by_hand_for_cosface_at_90_degrees():
    t_star = math.acos(0.35 / math.sqrt(2)) - PI / 4  # 30.67°
    alpha = np.radians([0.0, 30.0, 31.0, 45.0, 59.0, 60.0, 90.0])
    _, lab = g.circle_regions(PI / 2, 1, 0, 0.35, alpha=alpha)
    assert math.degrees(t_star) == pytest.approx(30.67, abs=0.01)
    assert lab.tolist() == [g.CLASS1, g.CLASS1, g.NEITHER, g.NEITHER, g.NEITHER, g.CLASS2, g.CLASS2]
    # the grey arc between W1 and W2 is as wide as margin_width
    alpha, lab = g.circle_regions(PI / 2, 1, 0, 0.35, n=90 * 200 + 1)
    on_arc = alpha <= PI / 2
    step = alpha[1] - alpha[0]
    assert (lab[on_arc] == g.NEITHER).sum() * step == pytest.approx(g.margin_width(PI / 2, 1, 0, 0.35), abs=2 * step)


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0), (1, 0, 0.35), (1.35, 0, 0), (0.9, 0.4, 0.15), (0.8, 0, 0)])
@pytest.mark.parametrize("phi", [0.3, PI / 2, 2.5, PI])
def test_circle_regions_mirror_symmetric(m1, m2, m3, phi):
    alpha, lab = g.circle_regions(phi, m1, m2, m3)
    _, mirrored = g.circle_regions(phi, m1, m2, m3, alpha=phi - alpha)
    swap = {g.CLASS1: g.CLASS2, g.CLASS2: g.CLASS1, g.NEITHER: g.NEITHER, g.BOTH: g.BOTH}
    assert [swap[int(k)] for k in lab] == mirrored.tolist()
    assert set(np.unique(lab)) <= {g.NEITHER, g.CLASS1, g.CLASS2, g.BOTH}


@settings(max_examples=150, deadline=None)
@given(m1=st.floats(0.8, 2.0), m2=st.floats(0.0, 1.0), m3=st.floats(0.0, 0.6), phi=st.floats(0.0, PI))
def test_width_agrees_with_decision_rule(m1, m2, m3, phi):
    """Property: left of t* class 1 wins, between t* and φ − t* nobody (or both, if negative), |width| ≤ φ."""
    t = float(g.margin_crossing(phi, m1, m2, m3))
    w = float(g.margin_width(phi, m1, m2, m3))
    assert math.isfinite(w) and -phi - 1e-12 <= w <= phi + 1e-12 and 0 <= t <= phi
    eps = 1e-6
    if t > 2 * eps:
        assert g.decide(t - eps, phi - t + eps, m1, m2, m3) in (g.CLASS1, g.BOTH)
    if w > 4 * eps:
        mid = phi / 2
        assert g.decide(mid, mid, m1, m2, m3) == g.NEITHER
        assert g.decide(t + eps, phi - t - eps, m1, m2, m3) == g.NEITHER
    elif w < -4 * eps:
        assert g.decide(phi / 2, phi / 2, m1, m2, m3) == g.BOTH


def test_geometry_finite_at_slider_extremes():
    t = np.linspace(0.0, PI, 181)
    phi = np.linspace(0.0, PI, 91)
    for m1, m2, m3 in itertools.product(M1, M2, M3):
        assert np.isfinite(g.boundary_theta2(t, m1, m2, m3)).all()
        w = g.margin_width(phi, m1, m2, m3)
        assert np.isfinite(w).all() and (np.abs(w) <= phi + 1e-12).all()
        assert math.isfinite(g.swallow_angle(m1, m2, m3))
        _, lab = g.circle_regions(PI, m1, m2, m3)
        assert lab.size == 721


def test_phi_outside_zero_to_pi_rejected():
    for bad in (-0.1, 3.5, float("nan")):
        with pytest.raises(ValueError):
            g.margin_width(bad, 1, 0.5, 0)
    with pytest.raises(ValueError):
        g.width_range(1.0, 0.5)


# --- Fig. 5: Softmax ---------------------------------------------------------------------------

def test_softmax_boundary_line():
    w1, w2, b1, b2 = np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5, 0.0
    p, d = g.softmax_boundary(w1, w2, b1, b2)
    np.testing.assert_allclose(p, [-0.25, 0.25])
    assert (w1 - w2) @ p + b1 - b2 == pytest.approx(0.0)
    assert np.linalg.norm(d) == pytest.approx(1.0) and (w1 - w2) @ d == pytest.approx(0.0)
    seg = g.softmax_boundary_segment(w1, w2, b1, b2, box=(-2, 2, -2, 2))
    # the line x − y + 0.5 = 0 meets the box at (−2, −1.5) and (1.5, 2)
    assert sorted(map(tuple, np.round(seg, 12))) == [(-2.0, -1.5), (1.5, 2.0)]
    assert g.softmax_boundary_segment(w1, w2, 10.0, 0.0, box=(-1, 1, -1, 1)) is None


def test_softmax_depends_on_feature_norm():
    w1, w2 = [1.0, 0.0], [0.0, 1.0]
    # along the direction 180°, (W1 − W2)·x + 0.5 = 0.5 − r: class 1 below r = 0.5, class 2 above
    assert g.softmax_flip_radius(PI, w1, w2, 0.5, 0.0) == pytest.approx(0.5)
    x = np.array([[-0.4, 0.0], [-0.6, 0.0]])
    assert g.softmax_decide(x, w1, w2, 0.5, 0.0).tolist() == [g.CLASS1, g.CLASS2]
    assert g.softmax_flip_radius(0.0, w1, w2, 0.5, 0.0) is None  # never flips along 0°
    assert g.softmax_flip_radius(PI, w1, w2, 0.0, 0.0) is None  # no bias: angle alone decides
    with pytest.raises(ValueError):
        g.softmax_boundary(w1, w1, 0.0, 1.0)


def test_margin_fit_reproduces_cosface_toy_bound():
    import math

    from arcface_viz.geometry import margin_fit_warning, max_min_centre_angle

    bound = 1 - math.cos(math.pi / 4)  # CosFace: 8 classes on a circle
    assert margin_fit_warning(8, 2, 1, 0, bound - 0.01) is None
    assert "45.0°" in margin_fit_warning(8, 2, 1, 0, bound + 0.01)
    assert margin_fit_warning(8, 2, 1, math.radians(44), 0) is None  # ArcFace: the margin is the angle itself
    assert margin_fit_warning(8, 2, 1, math.radians(46), 0)
    assert math.degrees(max_min_centre_angle(4, 3)) == pytest.approx(109.4712, abs=1e-3)
    assert max_min_centre_angle(2, 512) == pytest.approx(math.pi)
