"""The loss family: hand-computed values, an independent implementation, edge angles and numerics."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from arcface_viz.losses import (
    LOSSES,
    a_softmax_lambda,
    a_softmax_psi,
    a_softmax_target,
    extension_threshold,
    loss_defaults,
    make_loss,
    target_logit,
    target_logit_slope,
)
from arcface_viz.params import LOSS_SPEC

R = {p.name: (p.min, p.max) for p in LOSS_SPEC if p.kind == "float"}


def unit(deg):
    a = math.radians(deg)
    return [math.cos(a), math.sin(a)]


def two_class(name, x_deg, **params):
    """W0 along 0°, W1 along 90°, one sample at x_deg of class 0."""
    loss = make_loss(name, 2, 2, **params)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([unit(x_deg)], requires_grad=True)
    return loss, x, torch.tensor([0])


# --- target-logit curves (Fig. 4b) ------------------------------------------------------------


def test_target_logit_hand_values():
    # ArcFace: cos(60° + 0.5 rad) = cos(88.648°)
    assert target_logit(np.array([math.pi / 3]), 1, 0.5, 0)[0] == pytest.approx(0.0235966, abs=1e-6)
    # CosFace: cos 60° − 0.35 = 0.15
    assert target_logit(np.array([math.pi / 3]), 1, 0, 0.35)[0] == pytest.approx(0.15)
    # SphereFace (1.35): cos(81°)
    assert target_logit(np.array([math.pi / 3]), 1.35, 0, 0)[0] == pytest.approx(math.cos(math.radians(81)))
    # CM2 at 90°: cos(0.9·π/2 + 0.4) − 0.15
    assert target_logit(np.array([math.pi / 2]), 0.9, 0.4, 0.15)[0] == pytest.approx(
        math.cos(0.9 * math.pi / 2 + 0.4) - 0.15)


def test_arcface_extension_is_insightface_convention():
    m = 0.5
    theta = np.array([math.pi - m - 0.01, 3.0, math.pi])
    got = target_logit(theta, 1, m, 0, monotonic=True)
    assert got[0] == pytest.approx(math.cos(theta[0] + m))
    assert got[1] == pytest.approx(math.cos(3.0) - m * math.sin(m))
    assert got[2] == pytest.approx(-1 - m * math.sin(m))
    # the raw formula turns back up past π − m
    raw = target_logit(theta, 1, m, 0)
    assert raw[2] > raw[1]


def test_easy_margin_only_where_cos_positive():
    theta = np.array([math.radians(40), math.radians(120)])
    got = target_logit(theta, 1, 0.5, 0, easy_margin=True)
    assert got[0] == pytest.approx(math.cos(math.radians(40) + 0.5))
    assert got[1] == pytest.approx(math.cos(math.radians(120)))


@settings(max_examples=200, deadline=None)
@given(m1=st.floats(*R["m1"]), m2=st.floats(*R["m2"]), m3=st.floats(*R["m3"]))
def test_training_curve_is_non_increasing_on_0_pi(m1, m2, m3):
    theta = np.linspace(0, math.pi, 2001)
    f = target_logit(theta, m1, m2, m3, monotonic=True)
    assert np.isfinite(f).all()
    assert (np.diff(f) <= 1e-9).all()


def test_slope_matches_finite_difference():
    theta = np.linspace(0.05, math.pi - 0.05, 400)
    for m1, m2, m3 in [(1, 0.5, 0), (1.35, 0, 0), (0.9, 0.4, 0.15), (2.0, 1.0, 0.6)]:
        t_star = extension_threshold(m1, m2)
        keep = np.abs(theta - t_star) > 1e-3
        h = 1e-6
        fd = (target_logit(theta + h, m1, m2, m3, monotonic=True)
              - target_logit(theta - h, m1, m2, m3, monotonic=True)) / (2 * h)
        np.testing.assert_allclose(target_logit_slope(theta, m1, m2, m3)[keep], fd[keep], atol=1e-5)


def test_a_softmax_psi_hand_values_and_monotonic():
    # θ = 60°, m = 4: k = 1, ψ = −cos(240°) − 2 = −1.5
    assert a_softmax_psi(np.array([math.pi / 3]), 4)[0] == pytest.approx(-1.5)
    assert a_softmax_psi(np.array([0.0]), 4)[0] == pytest.approx(1.0)
    assert a_softmax_psi(np.array([math.pi]), 4)[0] == pytest.approx(-7.0)
    psi = a_softmax_psi(np.linspace(0, math.pi, 3001), 4)
    assert (np.diff(psi) <= 1e-9).all()
    # Fig. 4b's "SphereFace (m=4, λ=5)": (5 cos 60° − 1.5)/6
    assert a_softmax_target(np.array([math.pi / 3]), 4, 5)[0] == pytest.approx((2.5 - 1.5) / 6)


def test_a_softmax_lambda_schedule():
    assert a_softmax_lambda(0) == 1000
    assert a_softmax_lambda(100) == pytest.approx(1000 / 13)
    assert a_softmax_lambda(10**6) == 5
    assert a_softmax_lambda(10**6, lam_min=0) < 0.01


# --- module values ----------------------------------------------------------------------------


def test_arcface_loss_hand_computed():
    loss, x, y = two_class("arcface", 60, s=2.0, m2=0.5)
    l0, l1 = 2 * math.cos(math.radians(60) + 0.5), 2 * math.cos(math.radians(30))
    expected = math.log(math.exp(l0) + math.exp(l1)) - l0
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(loss.logits(x, y).detach().numpy()[0], [l0, l1], rtol=1e-5)
    # without labels: plain s·cos θ
    np.testing.assert_allclose(loss.logits(x).detach().numpy()[0], [2 * 0.5, 2 * math.cos(math.radians(30))],
                               rtol=1e-5)


def test_cosface_loss_hand_computed():
    loss, x, y = two_class("cosface", 0, s=64.0, m3=0.35)
    np.testing.assert_allclose(loss.logits(x, y).detach().numpy()[0], [64 * 0.65, 0.0], atol=1e-4)
    assert loss(x, y).item() == pytest.approx(math.log1p(math.exp(-64 * 0.65)), rel=1e-3)


def test_sphereface_and_combined_hand_computed():
    loss, x, y = two_class("sphereface", 40, s=10.0, m1=1.35)
    assert loss.logits(x, y)[0, 0].item() == pytest.approx(10 * math.cos(math.radians(54)), rel=1e-5)
    loss, x, y = two_class("combined", 40, s=10.0, m1=0.9, m2=0.4, m3=0.15)
    want = 10 * (math.cos(0.9 * math.radians(40) + 0.4) - 0.15)
    assert loss.logits(x, y)[0, 0].item() == pytest.approx(want, rel=1e-5)


def test_a_softmax_keeps_feature_norm():
    loss = make_loss("a_softmax", 2, 2, m=4, lam=5.0)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[3 * v for v in unit(60)]])
    logits = loss.logits(x, torch.tensor([0]))[0]
    assert logits[0].item() == pytest.approx(3 * (5 * 0.5 - 1.5) / 6, rel=1e-5)
    assert logits[1].item() == pytest.approx(3 * math.cos(math.radians(30)), rel=1e-5)


def test_softmax_is_a_linear_layer_with_bias():
    torch.manual_seed(0)
    loss = make_loss("softmax", 5, 3)
    x, y = torch.randn(16, 3), torch.randint(0, 5, (16,))
    want = F.cross_entropy(x @ loss.weight.t() + loss.bias, y)
    assert loss(x, y).item() == pytest.approx(want.item(), rel=1e-6)


def insightface_arcface_logits(x, w, y, s, m):
    """An independent ArcFace: cos(θ+m) = cos θ cos m − sin θ sin m, with the th/mm fallback."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    ct = cos[torch.arange(len(y)), y]
    sin = torch.sqrt((1 - ct**2).clamp(min=0))
    phi = ct * math.cos(m) - sin * math.sin(m)
    phi = torch.where(ct > math.cos(math.pi - m), phi, ct - math.sin(math.pi - m) * m)
    out = cos.clone()
    out[torch.arange(len(y)), y] = phi
    return out * s


def test_arcface_matches_independent_implementation_values_and_gradients():
    torch.manual_seed(1)
    loss = make_loss("arcface", 10, 8, s=30.0, m2=0.5)
    x = torch.randn(64, 8, requires_grad=True)
    y = torch.randint(0, 10, (64,))
    ours = loss(x, y)
    (gx,) = torch.autograd.grad(ours, x)
    ref = F.cross_entropy(insightface_arcface_logits(x, loss.weight, y, 30.0, 0.5), y)
    (rx,) = torch.autograd.grad(ref, x)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(gx, rx, rtol=1e-3, atol=1e-5)


def test_norm_softmax_matches_independent_implementation():
    torch.manual_seed(2)
    loss = make_loss("norm_softmax", 7, 5, s=20.0)
    x, y = torch.randn(32, 5), torch.randint(0, 7, (32,))
    want = F.cross_entropy(20 * F.normalize(x, dim=1) @ F.normalize(loss.weight, dim=1).t(), y)
    assert loss(x, y).item() == pytest.approx(want.item(), rel=1e-5)


def test_margin_warmup_scale_zero_is_norm_softmax():
    torch.manual_seed(3)
    arc = make_loss("combined", 6, 4, s=16.0, m1=1.2, m2=0.3, m3=0.1)
    ns = make_loss("norm_softmax", 6, 4, s=16.0)
    ns.weight.data.copy_(arc.weight.data)
    x, y = torch.randn(20, 4), torch.randint(0, 6, (20,))
    arc.margin_scale = 0.0
    assert arc(x, y).item() == pytest.approx(ns(x, y).item(), rel=1e-5)
    arc.margin_scale = 1.0
    assert arc(x, y).item() > ns(x, y).item()


# --- regularisers -----------------------------------------------------------------------------


def test_intra_term_is_mean_angle_over_pi():
    ns = make_loss("norm_softmax", 2, 2, s=4.0)
    intra = make_loss("intra", 2, 2, s=4.0)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ns.weight.data.copy_(w)
    intra.weight.data.copy_(w)
    x = torch.tensor([unit(30), unit(60), unit(80)])
    y = torch.tensor([0, 1, 1])  # angles to their centres: 30°, 30°, 10°
    diff = intra(x, y).item() - ns(x, y).item()
    assert diff == pytest.approx(math.radians(70 / 3) / math.pi, abs=1e-4)


def test_inter_term_three_centres_at_120_degrees():
    inter = make_loss("inter", 3, 2, s=4.0)
    ns = make_loss("norm_softmax", 3, 2, s=4.0)
    w = torch.tensor([unit(0), unit(120), unit(240)])
    inter.weight.data.copy_(w)
    ns.weight.data.copy_(w)
    x, y = torch.tensor([unit(10), unit(100)]), torch.tensor([0, 1])
    assert inter(x, y).item() - ns(x, y).item() == pytest.approx(-2 / 3, abs=1e-4)


def test_triplet_batch_hard_hand_computed():
    loss = make_loss("triplet", 2, 2, margin=0.2)
    # class 0 at 0° and 20°, class 1 at 50° and 90°: anchor 0° → hardest pos 20°, hardest neg 50°
    x = torch.tensor([unit(0), unit(20), unit(50), unit(90)])
    y = torch.tensor([0, 0, 1, 1])
    # per anchor: θ_ap + m − θ_an:  0°: 20−50, 20°: 20−30, 50°: 40−30, 90°: 40−70
    per = [math.radians(20) + 0.2 - math.radians(50), math.radians(20) + 0.2 - math.radians(30),
           math.radians(40) + 0.2 - math.radians(30), math.radians(40) + 0.2 - math.radians(70)]
    want = sum(max(0.0, p) for p in per) / 4
    assert loss(x, y).item() == pytest.approx(want, abs=1e-4)


def test_triplet_centres_follow_class_means():
    loss = make_loss("triplet", 2, 2, margin=0.2)
    x = torch.tensor([unit(0), unit(20), unit(80), unit(100)])
    y = torch.tensor([0, 0, 1, 1])
    loss(x, y)
    np.testing.assert_allclose(loss.weight.numpy(), [unit(10), unit(90)], atol=1e-5)
    assert loss.logits(x).argmax(1).tolist() == [0, 0, 1, 1]
    assert not LOSSES["triplet"].has_centres


# --- registry and API -------------------------------------------------------------------------


def test_registry_has_every_loss_of_the_issue():
    names = {"softmax", "norm_softmax", "sphereface", "a_softmax", "cosface", "arcface", "combined", "intra",
             "inter", "triplet", "arcface+intra", "arcface+inter", "arcface+intra+inter", "arcface+triplet",
             "norm_softmax+intra", "norm_softmax+inter", "norm_softmax+intra+inter"}
    assert names <= set(LOSSES)
    assert loss_defaults("arcface") == {"s": 64.0, "m2": 0.5, "easy_margin": False}
    assert loss_defaults("cosface")["m3"] == 0.35 and loss_defaults("sphereface")["m1"] == 1.35
    assert LOSSES["combined"].presets["CM2"] == {"m1": 0.9, "m2": 0.4, "m3": 0.15}
    for name in LOSSES:
        assert loss_defaults(name, low_dim=True).get("s", 0) <= 32


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_api_shapes(name):
    loss = make_loss(name, 5, 3)
    assert tuple(loss.weight.shape) == (5, 3)
    x, y = torch.randn(12, 3), torch.randint(0, 5, (12,))
    assert loss.logits(x).shape == (12, 5)
    assert loss.logits(x, y).shape == (12, 5)
    assert loss(x, y).dim() == 0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("arcfaec", 3, 2)
    with pytest.raises(ValueError, match="unknown loss parameter"):
        make_loss("arcface", 3, 2, margin2=0.1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_loss("arcface", 1, 2)


# --- numerics: θ = 0 and θ = π exactly, every slider extreme, float32 and bfloat16 ------------

EXTREMES = [
    dict(s=64.0, m1=2.0, m2=1.0, m3=0.6, m=6, lam=0.0, margin=1.0),
    dict(s=1.0, m1=0.8, m2=0.0, m3=0.0, m=1, lam=100.0, margin=0.0),
    dict(s=64.0, m1=1.0, m2=1.0, m3=0.0, m=4, lam=5.0, margin=0.35, easy_margin=True),
]


def finite_loss_and_grads(name, theta, params, dtype):
    loss = make_loss(name, 3, 2, **{k: v for k, v in params.items() if k in LOSSES[name].params})
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([unit(0), unit(120), unit(240)]))
    loss = loss.to(dtype)
    # class 0 sample at angle θ from W0, plus a class-1 sample so triplet terms have a negative
    x = torch.tensor([[math.cos(theta), math.sin(theta)], unit(120), [1.0, 0.0]], dtype=dtype,
                     requires_grad=True)
    y = torch.tensor([0, 1, 0])
    value = loss(x, y)
    grads = torch.autograd.grad(value, [x] + [p for p in loss.parameters()], allow_unused=True)
    return torch.isfinite(value.float()).item() and all(
        g is None or torch.isfinite(g.float()).all().item() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("params", EXTREMES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_edge_angles_finite(name, params, dtype):
    for theta in (0.0, math.pi, math.pi / 2):
        assert finite_loss_and_grads(name, theta, params, dtype), (name, theta)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(list(LOSSES)),
    theta=st.one_of(st.just(0.0), st.just(math.pi), st.floats(0, math.pi)),
    s=st.floats(*R["s"]), m1=st.floats(*R["m1"]), m2=st.floats(*R["m2"]), m3=st.floats(*R["m3"]),
    m=st.integers(1, 6), lam=st.floats(*R["lam"]), margin=st.floats(*R["margin"]),
    easy=st.booleans(), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_property_no_nan_or_inf(name, theta, s, m1, m2, m3, m, lam, margin, easy, dtype):
    params = dict(s=s, m1=m1, m2=m2, m3=m3, m=m, lam=lam, margin=margin, easy_margin=easy)
    assert finite_loss_and_grads(name, theta, params, dtype)


COSINE_CASES = [
    ("norm_softmax", {"s": 16.0}),
    ("cosface", {"s": 30.0, "m3": 0.35}),
    ("arcface", {"s": 64.0, "m2": 0.5}),
    ("arcface", {"s": 16.0, "m2": 1.2, "easy_margin": True}),
    ("sphereface", {"s": 64.0, "m1": 1.35}),
    ("sphereface", {"s": 8.0, "m1": 0.8}),
    ("combined", {"s": 64.0, "m1": 0.9, "m2": 0.4, "m3": 0.15}),
    ("combined", {"s": 32.0, "m1": 2.5, "m2": 1.5, "m3": 0.5}),
    ("arcface+intra+inter", {"s": 16.0, "m2": 0.2}),
]


@pytest.mark.parametrize("name,params", COSINE_CASES)
def test_fused_training_path_matches_op_by_op_autograd(name, params):
    """forward() runs one fused node (_MarginCE); it must equal CE(logits(x, y)) in value and gradient,
    including samples on their centre (θ = 0), opposite it (θ = π) and past the extension threshold."""
    torch.manual_seed(5)
    loss = make_loss(name, 6, 3, **params)
    loss.margin_scale = 0.7  # mid warm-up: non-trivial effective margins
    x = torch.randn(40, 3)
    y = torch.randint(0, 6, (40,))
    w = F.normalize(loss.weight.detach(), dim=1)
    x[0], x[1], x[2] = 2.0 * w[y[0]], -3.0 * w[y[1]], -w[y[2]] + 0.05 * torch.randn(3)
    x.requires_grad_(True)
    fused = loss(x, y)
    gx, gw = torch.autograd.grad(fused, (x, loss.weight))
    ref = F.cross_entropy(loss.logits(x, y), y)
    for reg in loss.info.regularisers:
        ref = ref + getattr(loss, f"_{reg}")(x, y)
    rx, rw = torch.autograd.grad(ref, (x, loss.weight))
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(gx).all() and torch.isfinite(gw).all()


FUSED = [name for name, info in LOSSES.items() if info.margin is not None and info.fused]


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("low_dim", [False, True])
def test_every_fused_margin_matches_its_autograd_path(name, low_dim):
    """For every registered margin function: the fused node's analytic backward (from the derivatives the
    function returns) = autograd through the same function, in values, gradients and the state it updates,
    with samples at θ = 0 and θ = π, during the warm-up."""
    from arcface_viz.margin import margin_cross_entropy

    torch.manual_seed(8)
    loss = make_loss(name, 6, 3, **loss_defaults(name, low_dim))
    loss.margin_scale = 0.6
    x = torch.randn(30, 3) * 2
    y = torch.randint(0, 6, (30,))
    w = F.normalize(loss.centre_matrix().detach(), dim=1)
    x[0], x[1] = 2.0 * w[y[0] * loss.centres], -0.5 * w[y[1] * loss.centres]
    state = {k: v.clone() for k, v in loss.named_buffers()}
    runs = []
    for fused in (True, False):
        loss.load_state_dict({**loss.state_dict(), **state})
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(9)  # margins drawn at random see the same numbers
        centres = loss.centre_matrix()
        value = margin_cross_entropy(loss, xi, centres, y, fused=fused)
        grads = torch.autograd.grad(value, (xi, centres))
        runs.append((value, *grads, *(b.clone() for _, b in loss.named_buffers())))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(torch.isfinite(t).all() for t in runs[0])


def test_fused_training_path_passes_gradcheck():
    """Finite differences in float64 on the fused node, away from the piecewise boundaries."""
    from arcface_viz.losses import make_margin
    from arcface_viz.margin import _MarginCE

    torch.manual_seed(6)
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (12,))
    for m1, m2, m3, easy in ((1.0, 0.0, 0.0, False), (1.0, 0.5, 0.0, False), (1.3, 0.2, 0.1, False),
                             (1.0, 0.5, 0.0, True)):
        margin = make_margin("combined", s=4.0, m1=m1, m2=m2, m3=m3, easy_margin=easy)
        assert torch.autograd.gradcheck(lambda a, b, m=margin: _MarginCE.apply(a, b, y, m),
                                        (x, w), eps=1e-6, atol=1e-5)
