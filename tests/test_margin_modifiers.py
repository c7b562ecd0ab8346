"""The margin runner's general modifiers, declared once for every loss with a margin function:

- ``detach_margin``: the logits keep the margined values, but ∂logit/∂cos θ is s for the target as for every
  other class (insightface's arcface_torch since Dec 2022, opensphere);
- ``interclass_filtering_threshold`` τ: every non-target cosine above τ becomes 0, without gradient, before the
  margin (arcface_torch's configs for noisy data).

Both are checked against independent implementations written here: the gradient of s·cos θ under the
margined softmax, and a transcription of arcface_torch's ``CombinedMarginLoss.forward``.  Partial FC on two
gloo ranks is in tests/test_partial_fc.py; finite values under autocast at the end.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from arcface_viz.losses import LOSSES, loss_defaults, make_loss, make_margin, target_logit
from arcface_viz.margin import margin_cross_entropy
from arcface_viz.params import LOSS_SPEC

DETACHABLE = [n for n, info in LOSSES.items() if "detach_margin" in info.params]
FILTERABLE = [n for n, info in LOSSES.items() if "interclass_filtering_threshold" in info.params]
UNIT_SLOPE = {"cosface"}  # f = cos θ − m3 has ∂f/∂cos θ = 1 already: detaching changes nothing


def _batch(loss, n=24, d=3, seed=3):
    """Random samples, one on its centre (θ = 0) and one opposite it (θ = π)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * 2
    y = torch.randint(0, loss.num_classes, (n,), generator=g)
    w = F.normalize(loss.centre_matrix().detach(), dim=1)
    x[0], x[1] = 2.0 * w[y[0] * loss.centres], -0.5 * w[y[1] * loss.centres]
    return x, y


def _value_and_grads(loss, x, y, fused=None):
    xi = x.clone().requires_grad_(True)
    if fused is None or loss.info.head != "cosine":
        value = loss(xi, y)
    else:
        value = margin_cross_entropy(loss, xi, loss.centre_matrix(), y, fused=fused)
        for reg in loss.info.regularisers:
            value = value + getattr(loss, f"_{reg}")(xi, y)
    params = [p for p in loss.parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, [xi, *params])
    return value.detach(), grads


def test_every_margin_loss_has_both_modifiers_and_they_are_controls():
    assert {"arcface", "cosface", "sphereface", "combined", "a_softmax", "arcface+triplet"} <= set(DETACHABLE)
    assert "norm_softmax" not in DETACHABLE and "norm_softmax" in FILTERABLE  # no margin to detach
    assert "softmax" not in FILTERABLE and "triplet" not in FILTERABLE  # no cosine head
    # declared once: a lesson switch / slider, a URL key and a CLI flag from LOSS_SPEC
    assert LOSS_SPEC["detach_margin"].kind == "bool" and LOSS_SPEC["detach_margin"].default is False
    tau = LOSS_SPEC["interclass_filtering_threshold"]
    assert (tau.kind, tau.default, tau.min, tau.max) == ("float", 0.0, 0.0, 1.0)
    query = LOSS_SPEC.to_query({"loss": "arcface", "detach_margin": True, "interclass_filtering_threshold": 0.4})
    values, notices = LOSS_SPEC.from_query(query)
    assert not notices and values["detach_margin"] is True and values["interclass_filtering_threshold"] == 0.4
    parser = argparse.ArgumentParser()
    LOSS_SPEC.add_arguments(parser)
    ns = parser.parse_args(["--detach-margin", "--interclass-filtering-threshold", "0.4"])
    flags = LOSS_SPEC.from_namespace(ns)
    assert flags["detach_margin"] is True and flags["interclass_filtering_threshold"] == 0.4


@pytest.mark.parametrize("name", DETACHABLE)
@pytest.mark.parametrize("fused", [True, False])
def test_detach_keeps_the_value_and_changes_only_the_gradient(name, fused):
    torch.manual_seed(1)
    plain = make_loss(name, 5, 3, **loss_defaults(name, low_dim=True))
    detached = make_loss(name, 5, 3, **loss_defaults(name, low_dim=True), detach_margin=True)
    detached.load_state_dict(plain.state_dict())
    x, y = _batch(plain)
    v0, g0 = _value_and_grads(plain, x, y, fused)
    v1, g1 = _value_and_grads(detached, x, y, fused)
    torch.testing.assert_close(v1, v0)
    assert all(torch.isfinite(g).all() for g in g1)
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(g0, g1, strict=True))
    assert same == (name in UNIT_SLOPE)


def _detached_reference(x, weight, y, s, m1, m2, m3, easy):
    """The gradient of s·cos θ_j under the margined softmax, written out: with p = softmax of the margined
    logits (values only), ∂L/∂cos θ_j = s·(p_j − [j = y])/B; autograd does the normalisations."""
    cos = F.normalize(x, dim=1) @ F.normalize(weight, dim=1).t()
    rows = torch.arange(len(y))
    with torch.no_grad():
        theta_y = torch.acos(cos[rows, y].clamp(-1 + 1e-6, 1 - 1e-6))
        z = s * cos.clone()
        z[rows, y] = s * target_logit(theta_y, m1, m2, m3, monotonic=True, easy_margin=easy)
        coeff = s * (torch.softmax(z, dim=1) - F.one_hot(y, weight.shape[0])) / len(y)
        value = F.cross_entropy(z, y)
    return value, (coeff * cos).sum()


@pytest.mark.parametrize("name,params", [
    ("arcface", {"s": 64.0, "m2": 0.5}),
    ("arcface", {"s": 16.0, "m2": 0.8, "easy_margin": True}),
    ("sphereface", {"s": 30.0, "m1": 1.35}),
    ("combined", {"s": 64.0, "m1": 0.9, "m2": 0.4, "m3": 0.15}),
    ("cosface", {"s": 64.0, "m3": 0.35}),
])
@pytest.mark.parametrize("fused", [True, False])
def test_detached_gradient_is_that_of_s_cos_theta_with_the_margined_softmax(name, params, fused):
    torch.manual_seed(2)
    loss = make_loss(name, 7, 4, **params, detach_margin=True)
    x, y = _batch(loss, n=32, d=4, seed=4)
    value, (gx, gw) = _value_and_grads(loss, x, y, fused)
    p = {"m1": 1.0, "m2": 0.0, "m3": 0.0, "easy_margin": False, **params}
    xr, wr = x.clone().requires_grad_(True), loss.weight.detach().clone().requires_grad_(True)
    ref_value, surrogate = _detached_reference(xr, wr, y, p["s"], p["m1"], p["m2"], p["m3"], p["easy_margin"])
    rx, rw = torch.autograd.grad(surrogate, (xr, wr))
    assert value.item() == pytest.approx(ref_value.item(), rel=1e-5)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------- inter-class filtering


def test_filtering_hand_computed():
    """W at 0°, 60°, 150°; a class-0 sample at 10°: cos = (0.985, 0.643, −0.766).  τ = 0.5 zeroes class 1's
    cosine (its logit becomes 0 and W1 gets no gradient); the target stays although it is above τ."""
    loss = make_loss("norm_softmax", 3, 2, s=2.0, interclass_filtering_threshold=0.5)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [-math.sqrt(3) / 2, 0.5]]))
    x = torch.tensor([[math.cos(math.radians(10)), math.sin(math.radians(10))]], requires_grad=True)
    y = torch.tensor([0])
    logits = loss.logits(x, y)
    c0, c2 = math.cos(math.radians(10)), math.cos(math.radians(140))
    torch.testing.assert_close(logits, torch.tensor([[2 * c0, 0.0, 2 * c2]]))
    value = loss(x, y)
    expected = -2 * c0 + math.log(math.exp(2 * c0) + 1.0 + math.exp(2 * c2))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert loss.weight.grad[1].abs().max().item() == 0.0 and loss.weight.grad[2].abs().max().item() > 0
    # off (τ = 0, the default) and τ above every cosine change nothing
    for tau in (0.0, 0.99):
        off = make_loss("norm_softmax", 3, 2, s=2.0, interclass_filtering_threshold=tau)
        off.load_state_dict(loss.state_dict())
        torch.testing.assert_close(off.logits(x, y), 2 * F.normalize(x, dim=1) @ off.weight.t())


def _arcface_torch_logits(cos, labels, s, m1, m2, m3, tau):
    """A transcription of arcface_torch's ``CombinedMarginLoss.forward`` (one process, every label local):
    the filter (a 0/1 mask from no-grad comparisons, the target column kept), then the ArcFace branch
    (m1 = 1, m3 = 0) with the margin added under no_grad, or the CosFace branch (m3 > 0)."""
    logits = cos.clamp(-1, 1)
    rows = torch.arange(len(labels))
    if tau > 0:
        with torch.no_grad():
            dirty = (logits > tau).float()
            mask = torch.ones_like(dirty)
            mask[rows, labels] = 0
            keep = 1 - dirty * mask
        logits = keep * logits
    if m1 == 1.0 and m3 == 0.0:
        with torch.no_grad():
            angles = torch.arccos(logits)
            angles[rows, labels] += m2
            margined = torch.cos(angles)
        return s * (logits + (margined - logits).detach())
    assert m3 > 0
    return s * torch.where(F.one_hot(labels, cos.shape[1]).bool(), logits - m3, logits)


@pytest.mark.parametrize("name,params,m", [
    # wf12m_conflict_r50_pfc03_filter04: CosFace 0.4 with τ = 0.4
    ("cosface", {"m3": 0.4, "interclass_filtering_threshold": 0.4}, (1.0, 0.0, 0.4)),
    ("arcface", {"m2": 0.5, "detach_margin": True, "interclass_filtering_threshold": 0.3}, (1.0, 0.5, 0.0)),
    ("arcface", {"m2": 0.5, "detach_margin": True}, (1.0, 0.5, 0.0)),  # ms1mv3_r50
])
@pytest.mark.parametrize("fused", [True, False])
def test_matches_arcface_torch_combined_margin_loss(name, params, m, fused):
    """Values and gradients of arcface_torch's loss for its configs' margins (s = 64, as its train_v2.py).

    Samples stay below θ_y = π − m2, where arcface_torch's cos(θ + m2) turns back up and ours follows the
    monotonic extension (cos θ − m2·sin m2): the one place the two differ."""
    torch.manual_seed(3)
    loss = make_loss(name, 9, 8, s=64.0, **params)
    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 9, (40,), generator=g)
    w = F.normalize(loss.weight.detach(), dim=1)
    x = w[y] * 0.8 + torch.randn(40, 8, generator=g) * 0.25  # near their centres: many cosines above τ
    x[0] = w[y[0]]
    value, (gx, gw) = _value_and_grads(loss, x, y, fused)
    xr, wr = x.clone().requires_grad_(True), loss.weight.detach().clone().requires_grad_(True)
    cos = F.normalize(xr, dim=1) @ F.normalize(wr, dim=1).t()
    assert (cos.detach()[torch.arange(40), y] > math.cos(math.pi - 0.5)).all()
    tau = params.get("interclass_filtering_threshold", 0.0)
    if tau:
        others = cos.detach().masked_fill(F.one_hot(y, 9).bool(), -1.0)
        assert (others > tau).sum() >= 10  # the filter has work to do
    ref = F.cross_entropy(_arcface_torch_logits(cos, y, 64.0, *m, tau), y)
    rx, rw = torch.autograd.grad(ref, (xr, wr))
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in FILTERABLE if LOSSES[n].fused])
def test_filtering_fused_path_equals_autograd(name):
    torch.manual_seed(4)
    loss = make_loss(name, 6, 3, **loss_defaults(name, low_dim=True), interclass_filtering_threshold=0.2,
                     **({"detach_margin": True} if name in DETACHABLE else {}))
    x, y = _batch(loss, n=30)
    v_f, g_f = _value_and_grads(loss, x, y, fused=True)
    v_a, g_a = _value_and_grads(loss, x, y, fused=False)
    torch.testing.assert_close(v_f, v_a)
    for a, b in zip(g_f, g_a, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- batched (G, B, C)


@pytest.mark.parametrize("fused", [True, False])
def test_batched_models_each_equal_their_own_run(fused):
    """G = 3 models in one (G, B, C) step, each with its own s, m2 and τ (τ = 0: that model unfiltered), all
    with the margin detached: each model's value and gradients are those of its own single run."""
    G, B, C, D = 3, 20, 5, 3
    torch.manual_seed(6)
    x = torch.randn(G, B, D) * 2
    w = torch.randn(G, C, D)
    y = torch.randint(0, C, (B,))
    s, m2, tau = [16.0, 30.0, 8.0], [0.2, 0.5, 0.3], [0.0, 0.2, 0.4]
    col = lambda v: torch.tensor(v).view(G, 1, 1)  # noqa: E731
    margin = make_margin("arcface", s=col(s), m2=col(m2), interclass_filtering_threshold=col(tau),
                         detach_margin=True)
    xb, wb = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    values = margin_cross_entropy(margin, xb, wb, y, fused=fused)
    values.sum().backward()
    for i in range(G):
        one = make_margin("arcface", s=s[i], m2=m2[i], interclass_filtering_threshold=tau[i], detach_margin=True)
        xi, wi = x[i].clone().requires_grad_(True), w[i].clone().requires_grad_(True)
        value = margin_cross_entropy(one, xi, wi, y, fused=fused)
        value.backward()
        assert values[i].item() == pytest.approx(value.item(), rel=1e-5)
        torch.testing.assert_close(xb.grad[i], xi.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(wb.grad[i], wi.grad, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_finite_under_autocast(name, dtype):
    """Under fp16/bf16 autocast a cosine at θ = 0 or π rounds to ±1, where arccos' is infinite: the loss head
    leaves autocast and computes in float32.  Value and every gradient finite, backward inside the context."""
    torch.manual_seed(0)
    loss = make_loss(name, 3, 2, **({"detach_margin": True} if name in DETACHABLE else {}))
    w = loss.weight.detach()
    x = torch.stack([w[0] * 5, -w[1] * 5, torch.randn(2), w[0] * 0.1]).requires_grad_(True)
    y = torch.tensor([0, 1, 1, 0])
    with torch.autocast("cpu", dtype=dtype):
        value = loss(x, y)
        value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters() if p.grad is not None)
    ref = make_loss(name, 3, 2)
    ref.load_state_dict(loss.state_dict())
    assert ref(x, y).item() == pytest.approx(value.item(), rel=1e-5)  # the same as in float32 outside autocast
