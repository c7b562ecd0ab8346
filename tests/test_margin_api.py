"""The margin API's extension points: a test-only loss (tests/margin_probe.py) registered through the public
registry runs through logits(), the fused training node, the autograd path and a batched (G, B, C) call, and
equals an op-by-op implementation of its formula.  Partial FC on 2 gloo ranks: tests/test_partial_fc.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from margin_probe import PROBE_DEFAULTS, probe_reference, probe_registered

from arcface_viz.losses import (
    LOSS_PARAMS,
    LOSSES,
    PARAM_NAMES,
    LossParam,
    declare_param,
    make_loss,
    make_margin,
    margin_cross_entropy,
    register_loss,
)

C, D, B = 7, 5, 24


@pytest.fixture
def probe():
    with probe_registered():
        yield


def _batch(seed: int, k: int = 1):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C * k, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    x = torch.randn(B, D, generator=g) * 1.5
    x[0] = centres[y[0] * k] * 2.0  # θ_y = 0 (on its (first sub-)centre)
    x[1] = -centres[y[1] * k] * 0.7  # θ_y ≈ π
    return x, centres, y


def _loss_with(name: str, centres: torch.Tensor, **params) -> torch.nn.Module:
    loss = make_loss(name, C, D, **params)
    with torch.no_grad():
        loss.centre_matrix().copy_(centres.view_as(loss.centre_matrix()))
    return loss


def _grads(value, x, loss):
    return torch.autograd.grad(value, (x, loss.centre_matrix()) if loss.centres == 1 else (x, loss.subcentres))


@pytest.mark.parametrize("name,k", [("probe", 1), ("probe_autograd", 1), ("probe_sub", 2)])
@pytest.mark.parametrize("detach", [False, True])
def test_probe_loss_equals_its_formula_over_three_training_steps(probe, name, k, detach):
    """Fused node (or autograd, for the fused=False entry) = op-by-op formula: values, gradients and state t."""
    x0, centres, y = _batch(1, k)
    loss = _loss_with(name, centres, detach_margin=detach, probe_sigma=0.1)
    t = 0.0
    for step in range(3):
        x = (x0 + 0.1 * step).requires_grad_(True)
        torch.manual_seed(step)
        value = loss(x, y)
        gx, gw = _grads(value, x, loss)
        torch.manual_seed(step)
        eps = torch.randn(B, 1)[:, 0]
        xr, wr = x0.clone().add_(0.1 * step).requires_grad_(True), centres.clone().requires_grad_(True)
        ref, t_new = probe_reference(xr, wr, y, k=k, t_old=t, eps=eps, probe_sigma=0.1, detach_margin=detach)
        rx, rw = torch.autograd.grad(ref, (xr, wr))
        assert value.item() == pytest.approx(ref.item(), rel=1e-5)
        assert loss.t.item() == pytest.approx(float(t_new), rel=1e-6)
        torch.testing.assert_close(loss.last_margins[:, 0], 0.3 + 0.1 * eps)
        torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gw.reshape(rw.shape), rw, rtol=1e-4, atol=1e-6)
        assert torch.isfinite(gx).all() and torch.isfinite(gw).all()
        t = float(t_new)


def test_probe_state_moves_only_in_training_and_is_saved(probe):
    x, centres, y = _batch(2)
    loss = _loss_with("probe", centres)
    loss.eval()
    loss(x, y)
    assert loss.t.item() == 0.0
    loss.train()
    loss(x, y)
    moved = loss.t.item()
    assert moved != 0.0
    loss.logits(x, y)  # logits() reads the state, never updates it
    assert loss.t.item() == moved
    assert loss.state_dict()["t"].item() == moved
    other = _loss_with("probe", centres)
    other.load_state_dict(loss.state_dict())
    assert other.t.item() == moved


def test_probe_logits_are_the_fused_losses_logits(probe):
    """CE(logits(x, y)) + the extra term = the fused loss, in evaluation mode (no state update)."""
    x, centres, y = _batch(3)
    loss = _loss_with("probe", centres).eval()
    loss.t.fill_(0.2)
    x.requires_grad_(True)
    fused = loss(x, y)
    a = x.norm(dim=1)
    ref = F.cross_entropy(loss.logits(x, y), y) + PROBE_DEFAULTS["probe_lambda"] * ((a - 1) ** 2).mean()
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(torch.autograd.grad(fused, x)[0], torch.autograd.grad(ref, x)[0], rtol=1e-4, atol=1e-6)


def test_probe_is_a_loss_like_any_other(probe):
    assert "probe" in LOSSES and "probe_g" in PARAM_NAMES
    loss = make_loss("probe", C, D)
    assert (loss.s, loss.probe_g, loss.margin) == (8.0, 0.3, 0.35)  # own defaults; others at their base
    arc = make_loss("arcface", C, D)
    assert arc.probe_g == 0.0 and arc.probe_k == 1  # every loss has every declared parameter
    loss.probe_k = 3.0  # a trainer sets floats: the declared type wins
    assert loss.probe_k == 3 and isinstance(loss.probe_k, int)
    sub = make_loss("probe_sub", C, D, probe_k=3)
    assert tuple(sub.subcentres.shape) == (C, 3, D) and sub.cosine(torch.randn(4, D)).shape == (4, C)


def test_subcentre_weight_is_the_dominant_subcentre(probe):
    """weight (C, d) is, per class, the sub-centre nearest to the most of its training samples."""
    loss = make_loss("probe_sub", 2, 2, probe_k=2)
    with torch.no_grad():
        loss.subcentres.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]]))
    assert torch.equal(loss.weight, loss.subcentres[:, 0])  # no samples seen yet: the first
    x = torch.tensor([[0.1, 1.0], [0.2, 1.0], [1.0, 0.1], [0.0, -1.0]])
    y = torch.tensor([0, 0, 0, 1])
    loss.eval()
    loss(x, y)
    assert loss.subcentre_hits.sum() == 0  # evaluation does not count
    loss.train()
    loss(x, y)
    assert loss.subcentre_hits.tolist() == [[1.0, 2.0], [0.0, 1.0]]
    torch.testing.assert_close(loss.weight.detach(), torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    assert "subcentre_hits" in loss.state_dict()


def test_a_subcentre_loss_with_one_subcentre_is_its_plain_loss(probe):
    """K = 1 sub-centre gives the same initial centres, loss and gradients as the plain loss."""
    x, _, y = _batch(11)
    torch.manual_seed(3)
    sub = make_loss("probe_sub", C, D, probe_k=1)
    torch.manual_seed(3)
    plain = make_loss("probe", C, D)
    torch.testing.assert_close(sub.weight, plain.weight)
    xs, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    vs, vp = sub(xs, y), plain(xp, y)
    assert vs.item() == pytest.approx(vp.item(), rel=1e-6)
    torch.testing.assert_close(torch.autograd.grad(vs, xs)[0], torch.autograd.grad(vp, xp)[0])


def test_registration_errors_are_clear():
    with pytest.raises(ValueError, match="undeclared parameter"):
        register_loss("bad", label="x", summary="x", margin=lambda b: None, params=("nope",))
    with pytest.raises(ValueError, match="does not use"):
        register_loss("bad", label="x", summary="x", margin=lambda b: None, params=("s",), paper={"m2": 0.1})
    with pytest.raises(ValueError, match="needs a margin function"):
        register_loss("bad", label="x", summary="x", params=("s",))
    with pytest.raises(ValueError, match="kind"):
        declare_param(LossParam("bad", "text", "", "", ""))
    assert "bad" not in LOSSES and "bad" not in LOSS_PARAMS


def test_the_warm_up_ramps_every_margin_declared_with_ramp(probe):
    margin = make_margin("arcface", m2=0.4)
    margin.margin_scale = 0.25
    assert margin.effective_margins() == (1.0, pytest.approx(0.1), 0.0)
    assert not LOSS_PARAMS["s"].ramp and LOSS_PARAMS["m2"].ramp


# --- batched: G models in one call, parameters as (G, 1, 1) tensors ------------------------------------

G = 3


def _batched(seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(G, C, D, generator=g)
    x = torch.randn(G, B, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    return x, centres, y


@pytest.mark.parametrize("name,params", [
    ("arcface", {"s": [8.0, 16.0, 30.0], "m2": [0.0, 0.2, 0.5]}),
    ("combined", {"s": [10.0, 20.0, 64.0], "m1": [0.9, 1.0, 1.35], "m2": [0.4, 0.0, 0.2], "m3": [0.15, 0.1, 0.0]}),
    ("cosface", {"s": [4.0, 8.0, 16.0], "m3": [0.0, 0.2, 0.35]}),
    ("probe", {"s": [4.0, 8.0, 12.0], "m2": [0.1, 0.3, 0.5]}),
])
def test_batched_call_equals_one_model_at_a_time(probe, name, params):
    """margin_cross_entropy on (G, B, d) x (G, C, d) with (G, 1, 1) parameters = G separate losses."""
    x, centres, y = _batched(4)
    tensors = {k: torch.tensor(v).view(G, 1, 1) for k, v in params.items()}
    margin = make_margin(name, batch_shape=(G,), **tensors)
    margin.margin_scale = 0.8
    xb, wb = x.clone().requires_grad_(True), centres.clone().requires_grad_(True)
    values = margin_cross_entropy(margin, xb, wb, y)
    assert values.shape == (G,)
    gx, gw = torch.autograd.grad(values.sum(), (xb, wb))
    for i in range(G):
        one = _loss_with(name, centres[i], **{k: v[i] for k, v in params.items()})
        one.margin_scale = 0.8
        xi = x[i].clone().requires_grad_(True)
        value = one(xi, y)
        rx, rw = torch.autograd.grad(value, (xi, one.weight))
        assert values[i].item() == pytest.approx(value.item(), rel=1e-5)
        torch.testing.assert_close(gx[i], rx, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gw[i], rw, rtol=1e-4, atol=1e-6)
        if "t" in margin.info.state:
            assert margin.t[i].item() == pytest.approx(one.t.item(), rel=1e-6)


def test_batched_autograd_path_equals_fused(probe):
    x, centres, y = _batched(5)
    s = torch.tensor([4.0, 8.0, 12.0]).view(G, 1, 1)
    out = []
    for name in ("probe", "probe_autograd"):
        margin = make_margin(name, batch_shape=(G,), s=s)
        xb, wb = x.clone().requires_grad_(True), centres.clone().requires_grad_(True)
        values = margin_cross_entropy(margin, xb, wb, y)
        out.append((values, *torch.autograd.grad(values.sum(), (xb, wb)), margin.t.clone()))
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_shared_centres_and_per_model_labels():
    """Centres without a model dimension are shared (their gradient sums over models); labels may be (G, B)."""
    x, centres, _ = _batched(6)
    y = torch.randint(0, C, (G, B), generator=torch.Generator().manual_seed(0))
    margin = make_margin("arcface", s=16.0, m2=0.3)
    w = centres[0].clone().requires_grad_(True)
    values = margin_cross_entropy(margin, x, w, y)
    (gw,) = torch.autograd.grad(values.sum(), w)
    want = torch.zeros_like(gw)
    for i in range(G):
        one = _loss_with("arcface", centres[0], s=16.0, m2=0.3)
        assert values[i].item() == pytest.approx(one(x[i], y[i]).item(), rel=1e-5)
        want += torch.autograd.grad(one(x[i], y[i]), one.weight)[0]
    torch.testing.assert_close(gw, want, rtol=1e-4, atol=1e-6)


def test_tensor_margins_are_finite_at_0_and_pi():
    margin = make_margin("combined", batch_shape=(2,), s=torch.tensor([64.0, 1.0]).view(2, 1, 1),
                         m1=torch.tensor([2.0, 0.8]).view(2, 1, 1), m2=torch.tensor([1.0, 0.0]).view(2, 1, 1),
                         m3=torch.tensor([0.6, 0.0]).view(2, 1, 1))
    w = torch.tensor([[1.0, 0.0], [-0.5, math.sqrt(0.75)]]).expand(2, 2, 2).clone().requires_grad_(True)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).expand(2, 2, 2).clone().requires_grad_(True)
    values = margin_cross_entropy(margin, x, w, torch.tensor([0, 0]))
    grads = torch.autograd.grad(values.sum(), (x, w))
    assert torch.isfinite(values).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["probe", "probe_sub"])
def test_the_toy_lesson_trains_a_newly_registered_loss(probe, name):
    """training.py knows nothing of the probe: it trains, its state moves, the snapshot draws its centres."""
    from arcface_viz.training import build_toy_trainer

    tr = build_toy_trainer(loss=name, seed=0, num_classes=3, samples_per_class=40, hidden=(16,))
    snap = tr.advance(30)
    assert snap.step == 30 and math.isfinite(snap.loss)
    assert tr.loss_fn.t.item() != 0.0
    assert snap.centres.shape == (3, 2)
    assert tr.current_loss_params() == {**PROBE_DEFAULTS, "interclass_filtering_threshold": 0.0,
                                        **({"probe_k": 2} if name == "probe_sub" else {})}


def test_state_can_start_from_the_number_of_classes():
    """AdaCos-like: the scale is state (a buffer named s, so loss.s reads it) starting at √2·ln(C − 1)."""
    from arcface_viz.fullscale.partial_fc import PartialFC
    from arcface_viz.losses import MarginOut

    def adaptive(b):
        return MarginOut(b.cos_y, scale=b.state["s"])

    saved = dict(LOSSES)
    try:
        register_loss("scaled", label="x", summary="x", margin=adaptive,
                      state={"s": lambda n: math.sqrt(2) * math.log(n - 1)})
        loss = make_loss("scaled", 11, D)
        assert loss.s.item() == pytest.approx(math.sqrt(2) * math.log(10))
        x = torch.randn(4, D)
        torch.testing.assert_close(loss.logits(x), loss.s * loss.cosine(x))
        assert "s" in loss.state_dict()
        assert PartialFC("scaled", 101, D).margin_loss.s.item() == pytest.approx(math.sqrt(2) * math.log(100))
        with pytest.raises(ValueError, match="give num_classes"):
            make_margin("scaled")
    finally:
        LOSSES.clear()
        LOSSES.update(saved)


@pytest.mark.parametrize("classes", [2, 3, 8, 10, 15, 16, 40])
@pytest.mark.parametrize("lead", [(256,), (30, 256), (1,)])
def test_the_fast_log_softmax_gives_torchs_bits(classes, lead):
    """margin._log_softmax takes a strided path for few classes (speed): it must give log_softmax's exact bits,
    else a run's numbers would depend on which path it took."""
    from arcface_viz.margin import _log_softmax

    g = torch.Generator().manual_seed(classes)
    for scale in (1.0, 64.0):
        x = torch.randn(*lead, classes, generator=g) * scale
        fast = _log_softmax(x)
        assert fast.is_contiguous()
        assert torch.equal(fast, torch.log_softmax(x, dim=-1))
